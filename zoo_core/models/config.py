"""The architecture description shared by every backend: a BERT config.

It reads and writes Hugging Face ``config.json`` files, so a portable checkpoint's
config loads unchanged in ``transformers``.  Every value is checked when a config is
made (:meth:`BertConfig.problem`): a config.json with impossible values (zero heads,
a width not divisible by the head count, label ids that are not 0..n-1, ...) is one
:class:`~zoo_core.errors.ModelError` line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import ModelError
from zoo_core.files import kind_of, load_json, quote

#: the activations every backend implements
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
PROBLEM_TYPES = ("single_label_classification", "regression")
#: the largest model a config may describe (BERT-large has 3.4e8 parameters)
MAX_PARAMETERS = 10**10
#: integer fields and their smallest value
_MINIMUM = {
    "vocab_size": 1,
    "hidden_size": 1,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "intermediate_size": 1,
    "max_position_embeddings": 2,  # [CLS] and [SEP]
    "type_vocab_size": 1,
    "pad_token_id": 0,
}
_MAX_INT = 2**31 - 1  # frameworks index with int32


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class BertConfig:
    """Shape and hyper-parameters of a BERT encoder with a sequence-classification head."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int = 0
    #: classifier head: label names in index order (a single name for regression)
    labels: tuple[str, ...] = ("0", "1")
    #: "single_label_classification" or "regression" (Hugging Face's problem_type)
    problem_type: str = "single_label_classification"
    #: per-head width; None means hidden_size // num_attention_heads
    attention_head_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ModelError(problem)

    def problem(self) -> str | None:
        """The first impossible value, as ``field: expected ..., got ...``; None if all are fine."""
        for name, minimum in _MINIMUM.items():
            value = getattr(self, name)
            if not _is_int(value) or not minimum <= value <= _MAX_INT:
                return f"{name}: expected an integer from {minimum} to {_MAX_INT}, got {kind_of(value)}"
        if self.pad_token_id >= self.vocab_size:
            return (
                f"pad_token_id: {self.pad_token_id} is outside the vocabulary (vocab_size {self.vocab_size})"
            )
        size = self.attention_head_size
        if size is not None and (not _is_int(size) or not 1 <= size <= _MAX_INT):
            return f"attention_head_size: expected an integer from 1 to {_MAX_INT}, got {kind_of(size)}"
        if size is None and self.hidden_size % self.num_attention_heads:
            return (
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            return f"hidden_act {quote(self.hidden_act)} is not supported (expected gelu or relu)"
        if not _is_number(self.layer_norm_eps) or self.layer_norm_eps <= 0:
            return f"layer_norm_eps: expected a number > 0, got {kind_of(self.layer_norm_eps)}"
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                return f"{name}: expected a probability in [0, 1), got {kind_of(value)}"
        if not _is_number(self.initializer_range) or self.initializer_range < 0:
            return f"initializer_range: expected a number >= 0, got {kind_of(self.initializer_range)}"
        if self.problem_type not in PROBLEM_TYPES:
            return (
                f"problem_type {quote(self.problem_type)} is not supported (expected one of {PROBLEM_TYPES})"
            )
        if (
            not isinstance(self.labels, (tuple, list))
            or not self.labels
            or not all(isinstance(x, str) for x in self.labels)
        ):
            return f"labels: expected a non-empty list of label names, got {kind_of(self.labels)}"
        if self.is_regression and len(self.labels) != 1:
            return f"a regression head has one output, but {len(self.labels)} labels are given"
        if (count := self.parameter_estimate()) > MAX_PARAMETERS:
            return f"describes a model of {count:.2g} parameters (at most {MAX_PARAMETERS:.0g})"
        return None

    def parameter_estimate(self) -> int:
        """About how many parameters the model has (embeddings, layers, head)."""
        h, inner = self.hidden_size, self.num_attention_heads * self.head_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h
        layer = 3 * h * inner + inner * h + 2 * h * self.intermediate_size
        return embeddings + self.num_hidden_layers * layer + h * h + h * len(self.labels)

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.attention_head_size or self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        """Number of classifier outputs (1 for regression)."""
        return len(self.labels)

    @property
    def is_regression(self) -> bool:
        """True when the head predicts one float (STS-B)."""
        return self.problem_type == "regression"

    def replace(self, **changes: Any) -> BertConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ---- Hugging Face config.json -------------------------------------------------
    def to_hf_dict(self) -> dict[str, Any]:
        """The config as a Hugging Face ``BertConfig`` dictionary."""
        d: dict[str, Any] = dict(self.extra)
        d.update(
            architectures=["BertForSequenceClassification"],
            model_type="bert",
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            pad_token_id=self.pad_token_id,
            position_embedding_type="absolute",
            problem_type=self.problem_type,
            id2label={str(i): name for i, name in enumerate(self.labels)},
            label2id={name: i for i, name in enumerate(self.labels)},
        )
        pruned = self.pruned_heads_per_layer()
        if pruned:  # a DynaBERT width: Hugging Face's way, so transformers loads it
            d["num_attention_heads"] = self.num_attention_heads + pruned
            d["pruned_heads"] = {
                str(i): list(range(self.num_attention_heads, self.num_attention_heads + pruned))
                for i in range(self.num_hidden_layers)
            }
        elif self.attention_head_size is not None:
            d["attention_head_size"] = self.attention_head_size
        return d

    def pruned_heads_per_layer(self) -> int:
        """Heads every layer lacks against ``hidden_size // head_size`` (0 unless a sliced width).

        A width export keeps each layer's first ``num_attention_heads`` heads of width
        ``head_size``; when ``head_size`` divides ``hidden_size`` that is exactly Hugging
        Face's ``pruned_heads`` (the rest of ``hidden_size // head_size`` heads pruned).
        """
        size = self.attention_head_size
        if size is None or self.hidden_size % size or self.hidden_size // size <= self.num_attention_heads:
            return 0
        return self.hidden_size // size - self.num_attention_heads

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> BertConfig:
        """Read a Hugging Face BERT config dictionary; ``source`` names it in errors.

        Every problem is one ModelError line ``source: field: what was expected``.
        """
        if not isinstance(d, dict):
            raise ModelError(f"{source}: expected a JSON object, got {kind_of(d)}")
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ModelError(f"{source}: model_type {quote(model_type)} is not supported (expected 'bert')")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError(f"{source}: only absolute position embeddings are supported")
        known = {f.name for f in dataclasses.fields(cls)} - {"labels", "extra", "problem_type"}
        kwargs: dict[str, Any] = {k: d[k] for k in known if k in d}
        kwargs.update(_unpruned(d, source))
        if kwargs.get("pad_token_id", 0) is None:  # Hugging Face's "unset"
            kwargs["pad_token_id"] = 0
        labels = _labels(d, source)
        if labels is not None:
            kwargs["labels"] = labels
        problem_type = d.get("problem_type")
        if problem_type:
            kwargs["problem_type"] = problem_type
        elif labels is not None and len(labels) == 1:
            kwargs["problem_type"] = "regression"
        try:
            return cls(**kwargs)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> BertConfig:
        """Read ``config.json`` (a file or the directory holding it) with :func:`zoo_core.files.load_json`."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists() and not path.is_symlink():
            raise ModelError(f"{path}: no such file (a model directory needs config.json)")
        return cls.from_hf_dict(load_json(path, error=ModelError, expect=dict), source=str(path))

    def save(self, directory: Path) -> None:
        """Write ``config.json`` into ``directory``."""
        (Path(directory) / "config.json").write_text(
            json.dumps(self.to_hf_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def _unpruned(d: dict[str, Any], source: str) -> dict[str, Any]:
    """``num_attention_heads`` and ``attention_head_size`` of a config with Hugging Face ``pruned_heads``.

    zoo models have the same heads in every layer, so every layer must lack as many
    (which heads were pruned does not matter: the remaining ones keep their order).
    """
    pruned = d.get("pruned_heads")
    if not pruned:
        return {}
    heads, hidden, layers = (d.get(k) for k in ("num_attention_heads", "hidden_size", "num_hidden_layers"))
    if not (isinstance(heads, int) and isinstance(hidden, int) and isinstance(layers, int)):
        return {}  # the field checks report it
    if heads < 1 or hidden % heads:
        return {}
    if not isinstance(pruned, dict) or not all(isinstance(v, list) for v in pruned.values()):
        raise ModelError(f"{source}: pruned_heads: expected {{layer: [head, ...]}}, got {kind_of(pruned)}")
    by_layer: dict[str, list[Any]] = {str(k): v for k, v in pruned.items()}
    counts = {len(set(by_layer.get(str(i), []))) for i in range(layers)}
    if len(counts) != 1 or not 0 < min(counts) < heads:
        raise ModelError(
            f"{source}: pruned_heads: every layer must lack the same number of heads (fewer than "
            f"{heads}); zoo models have one head count"
        )
    return {"num_attention_heads": heads - counts.pop(), "attention_head_size": hidden // heads}


def _labels(d: dict[str, Any], source: str) -> tuple[str, ...] | None:
    """The label names of ``id2label`` (ids 0..n-1, agreeing with ``num_labels``), or None if absent."""
    id2label, num_labels = d.get("id2label"), d.get("num_labels")
    if num_labels is not None and (not _is_int(num_labels) or not 1 <= num_labels <= _MAX_INT):
        raise ModelError(f"{source}: num_labels: expected an integer >= 1, got {kind_of(num_labels)}")
    if id2label is None:
        return None if num_labels is None else tuple(str(i) for i in range(num_labels))
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError(
            f"{source}: id2label: expected an object of label ids to names, got {kind_of(id2label)}"
        )
    by_id: dict[int, str] = {}
    for key, name in id2label.items():
        text = key.strip() if isinstance(key, str) else key
        digits = isinstance(text, str) and text.isascii() and text.isdigit() and len(text) < 10
        if not (digits or _is_int(text)):
            raise ModelError(f"{source}: id2label: key {quote(key)} is not a label id (0, 1, ...)")
        index = int(text)
        if index in by_id:
            raise ModelError(f"{source}: id2label: label id {index} appears twice")
        if not isinstance(name, (str, int, float)) or isinstance(name, bool):
            raise ModelError(f"{source}: id2label.{index}: expected a label name, got {kind_of(name)}")
        by_id[index] = str(name)
    if sorted(by_id) != list(range(len(by_id))):
        raise ModelError(
            f"{source}: id2label: label ids must be 0..{len(by_id) - 1}, got {quote(sorted(by_id))}"
        )
    if num_labels is not None and num_labels != len(by_id):
        raise ModelError(f"{source}: num_labels is {num_labels} but id2label names {len(by_id)} labels")
    return tuple(by_id[i] for i in range(len(by_id)))
