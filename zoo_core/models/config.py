"""The architecture description shared by every backend: a BERT config.

It reads and writes Hugging Face ``config.json`` files, so a portable checkpoint's
config loads unchanged in ``transformers``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import ModelError


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
        if self.hidden_act not in ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh"):
            raise ModelError(f"hidden_act {self.hidden_act!r} is not supported (expected gelu or relu)")
        if self.attention_head_size is None and self.hidden_size % self.num_attention_heads:
            raise ModelError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )

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
        if self.attention_head_size is not None:
            d["attention_head_size"] = self.attention_head_size
        return d

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> BertConfig:
        """Read a Hugging Face BERT config dictionary; ``source`` names it in errors."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ModelError(f"{source}: model_type {model_type!r} is not supported (expected 'bert')")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError(f"{source}: only absolute position embeddings are supported")
        known = {f.name for f in dataclasses.fields(cls)} - {"labels", "extra", "problem_type"}
        kwargs: dict[str, Any] = {k: d[k] for k in known if k in d}
        id2label = d.get("id2label")
        if id2label:
            kwargs["labels"] = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        problem_type = d.get("problem_type")
        if problem_type:
            kwargs["problem_type"] = problem_type
        elif id2label is not None and len(id2label) == 1:
            kwargs["problem_type"] = "regression"
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a field of the wrong type
            raise ModelError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> BertConfig:
        """Read ``config.json`` (a file or the directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: no such file (a model directory needs config.json)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a readable JSON config ({exc})") from None
        return cls.from_hf_dict(d, source=str(path))

    def save(self, directory: Path) -> None:
        """Write ``config.json`` into ``directory``."""
        (Path(directory) / "config.json").write_text(
            json.dumps(self.to_hf_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
