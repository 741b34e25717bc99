"""Turn a recipe's ``model`` reference into a config, weights and a vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_core.checkpoint import open_model_dir
from zoo_core.errors import ModelError
from zoo_core.models.catalog import BUNDLED_VOCAB, get_entry, looks_like_path
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, check_weights, init_weights


@dataclass
class ModelSource:
    """A resolved model: architecture, weights (None = random init), vocabulary."""

    ref: str
    config: BertConfig
    weights: Weights | None
    vocab_path: Path
    lowercase: bool
    meta: dict[str, Any]

    @property
    def description(self) -> str:
        """Where the weights come from, for logs."""
        return f"{self.ref} ({'pretrained' if self.weights is not None else 'random init'})"


def resolve_model(ref: str, load_weights: bool = True) -> ModelSource:
    """Resolve a catalog name or a model directory (zoo checkpoint or Hugging Face BERT)."""
    path: Path | None = None
    if looks_like_path(ref):
        path = Path(ref)
    else:
        entry = get_entry(ref)
        path = entry.weights_dir()
        if path is None:
            if entry.weights_package:
                raise ModelError(f"model {ref!r} needs its weights package: {entry.install_hint}")
            return ModelSource(ref, entry.config, None, BUNDLED_VOCAB, True, {})
    mdir = open_model_dir(path)
    weights = mdir.load_weights() if load_weights else None
    return ModelSource(ref, mdir.config, weights, mdir.vocab_path, mdir.lowercase, dict(mdir.meta))


def with_head(
    source: ModelSource, labels: tuple[str, ...], regression: bool, seed: int
) -> tuple[BertConfig, Weights, list[str]]:
    """The config and full weights for a model with a head for ``labels``.

    Missing pooler/classifier weights — or a classifier for another label set — are
    freshly initialised; returns the names that were initialised.
    """
    config = source.config.replace(
        labels=labels, problem_type="regression" if regression else "single_label_classification"
    )
    fresh = init_weights(config, seed)
    if source.weights is None:
        return config, fresh, list(fresh)
    weights = dict(source.weights)
    head_shape = fresh["classifier.weight"].shape
    if "classifier.weight" in weights and (
        weights["classifier.weight"].shape != head_shape or source.config.labels != labels
    ):
        del weights["classifier.weight"]
        weights.pop("classifier.bias", None)
    missing = check_weights(weights, config, source=source.ref, allow_missing=("bert.pooler.", "classifier."))
    for name in missing:
        weights[name] = fresh[name]
    return config, weights, missing
