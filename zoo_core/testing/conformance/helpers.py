"""The conformance suite's shared parts: tiny configs and batches, specs, and the base class.

Every capability module (:mod:`.core`, :mod:`.finetune`, :mod:`.distill`, :mod:`.width`,
:mod:`.export`, :mod:`.convert`) builds on these: :func:`tiny_config` and
:func:`tiny_batch` for shapes that run in seconds, the ``_model``/``_fine_tuning``/...
shortcuts, and :class:`ConformanceBase`, whose fixtures read the backend's capabilities
and skip a test the backend cannot run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, Protocol

import numpy as np
import pytest

from zoo_core.backend import (
    Backend,
    Batch,
    Converter,
    Distiller,
    DistillSpec,
    Exporter,
    FineTuner,
    Int8Exporter,
    TrainSpec,
    WidthSpec,
    WidthTrainer,
)
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights
from zoo_core.plugins import get_backend_spec
from zoo_core.runners.loop import LoopPlan
from zoo_core.trainers import Training

CLS, SEP = 2, 3  # tiny_batch's special tokens; 0 is padding


def tiny_config(**overrides: Any) -> BertConfig:
    """A 2-layer BERT (hidden 32, 4 heads, FFN 64, vocab 100, 64 positions)."""
    fields: dict[str, Any] = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    fields.update(overrides)
    return BertConfig(**fields)


def regression_config(**overrides: Any) -> BertConfig:
    """:func:`tiny_config` with a one-output regression head."""
    return tiny_config(labels=("score",), problem_type="regression", **overrides)


def tiny_batch(
    seed: int = 0,
    batch_size: int = 4,
    max_len: int = 12,
    vocab_size: int = 100,
    labels: Literal["classification", "regression"] | None = "classification",
    num_labels: int = 2,
) -> Batch:
    """Random sentence pairs ``[CLS] a [SEP] b [SEP]`` of varying length, padded to ``max_len``.

    The first example is ``max_len`` long, the others between ``max_len // 2`` (at
    least 5) and ``max_len``.  Classification labels cycle through every class;
    regression labels are floats in [0, 5].
    """
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch_size, max_len), np.int64)
    token_types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    lengths = rng.integers(max(5, max_len // 2), max_len + 1, batch_size)
    lengths[0] = max_len
    for i, n in enumerate(lengths):
        sep = int(rng.integers(2, n - 2))  # position of the first [SEP]
        ids[i, :n] = rng.integers(5, vocab_size, n)
        ids[i, [0, sep, n - 1]] = [CLS, SEP, SEP]
        token_types[i, sep + 1 : n] = 1
        mask[i, :n] = 1
    y: np.ndarray | None = None
    if labels == "classification":
        y = rng.permutation(np.arange(batch_size) % num_labels).astype(np.int64)
    elif labels == "regression":
        y = rng.uniform(0.0, 5.0, batch_size).astype(np.float32)
    return Batch(ids, token_types, mask, y, np.arange(batch_size))


def pad_batch(batch: Batch, length: int) -> Batch:
    """The same examples padded (with zeros) to ``length`` positions."""
    extra = length - batch.input_ids.shape[1]

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, extra)))

    return replace(
        batch,
        input_ids=pad(batch.input_ids),
        token_type_ids=pad(batch.token_type_ids),
        attention_mask=pad(batch.attention_mask),
    )


def _model(backend: Backend, config: BertConfig, seed: int = 0) -> tuple[Any, Weights]:
    model = backend.build_model(config)
    weights = init_weights(config, seed)
    backend.load_weights(model, weights)
    return model, weights


def _spec(config: BertConfig, **changes: Any) -> TrainSpec:
    return TrainSpec(objective="regression" if config.is_regression else "classification", **changes)


def _fine_tuning(backend: FullBackend, model: Any, spec: TrainSpec) -> Training:
    """``backend``'s fine-tuning trainer for ``model``, stepped by :func:`zoo_core.trainers.train_step`."""
    return Training.of(backend.make_trainer(model, spec), spec, needs_labels=True)


def _distilling(backend: FullBackend, student: Any, teacher: Any, spec: DistillSpec) -> Training:
    """``backend``'s distillation trainer, stepped by the core."""
    return Training.of(backend.make_distill_trainer(student, teacher, spec), spec.train)


def _width_training(backend: FullBackend, student: Any, teacher: Any, spec: WidthSpec) -> Training:
    """``backend``'s width trainer, stepped by the core."""
    return Training.of(backend.make_width_trainer(student, teacher, spec), spec.train)


def _max_change(before: Weights, after: Weights) -> float:
    return max(float(np.abs(after[n] - before[n]).max()) for n in before)


#: configs whose logits must match the numpy reference; a wide init makes attention non-uniform
REFERENCE_CASES = {
    "default": tiny_config(initializer_range=0.2),
    "head-size-12": tiny_config(initializer_range=0.2, attention_head_size=12),
    "relu-2-heads": tiny_config(initializer_range=0.2, hidden_act="relu", num_attention_heads=2),
    "regression": regression_config(initializer_range=0.2),
}

#: dropout off, so a distillation step's losses are a function of the weights alone
NO_DROPOUT: dict[str, Any] = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
#: dropout on at every site, at rates high enough that a wrong mask shows in the loss
DROPOUT: dict[str, Any] = dict(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2)


def distill_teacher_config(**overrides: Any) -> BertConfig:
    """The distillation teacher: :func:`tiny_config` (2 layers, hidden 32, 4 heads of 8)."""
    return tiny_config(**overrides)


def distill_student_config(hidden_size: int = 32, **overrides: Any) -> BertConfig:
    """A 1-layer student with the teacher's 4 heads, 6 wide, FFN 48 and ``hidden_size``."""
    fields: dict[str, Any] = dict(num_hidden_layers=1, attention_head_size=6, intermediate_size=48)
    fields.update(overrides)
    return tiny_config(hidden_size=hidden_size, **fields)


def distill_spec(
    stage: Literal["intermediate", "prediction"],
    objective: Literal["classification", "regression"] = "classification",
    layer_map: tuple[int, ...] = (2,),
    **changes: Any,
) -> DistillSpec:
    """A spec for ``stage`` with distinct weights per loss (1, 2, 0.5; 1.5 for logits)."""
    weights = {"embedding": 1.0, "hidden": 2.0, "attention": 0.5, "logits": 1.5}
    fields: dict[str, Any] = dict(
        train=TrainSpec(objective), stage=stage, layer_map=layer_map, loss_weights=weights, temperature=2.0
    )
    fields.update(changes)
    return DistillSpec(**fields)


def width_spec(config: BertConfig, **changes: Any) -> WidthSpec:
    """A spec over widths 1, 0.75 and 0.5 (4, 3 and 2 of 4 heads) with hidden weight 0.5, temperature 2."""
    fields: dict[str, Any] = dict(
        train=TrainSpec("regression" if config.is_regression else "classification"),
        widths=(1.0, 0.75, 0.5),
        loss_weights={"logits": 1.0, "hidden": 0.5},
        temperature=2.0,
    )
    fields.update(changes)
    return WidthSpec(**fields)


class FullBackend(Backend, FineTuner, Distiller, WidthTrainer, Exporter, Int8Exporter, Converter, Protocol):
    """A backend with every capability: how the conformance tests are typed (each skips unless declared)."""


class ConformanceBase:
    """The fixtures every capability's tests share: the backend's flags and the skips by capability."""

    @pytest.fixture
    def capabilities(self, backend: FullBackend) -> frozenset[str]:
        """The backend's capability flags, from its registered spec."""
        return get_backend_spec(backend.name).capabilities

    @pytest.fixture
    def finetune(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can fine-tune."""
        if "finetune" not in capabilities:
            pytest.skip("backend lacks the 'finetune' capability")

    @pytest.fixture
    def distill(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can distil (``make_distill_trainer``)."""
        if "distill" not in capabilities:
            pytest.skip("backend lacks the 'distill' capability")

    @pytest.fixture
    def width(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can train widths (``importance``, ``make_width_trainer``)."""
        if "width" not in capabilities:
            pytest.skip("backend lacks the 'width' capability")

    @pytest.fixture
    def converts(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend reads and writes its framework's own checkpoints."""
        if "convert" not in capabilities:
            pytest.skip("backend lacks the 'convert' capability")

    @pytest.fixture
    def exports(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend can export ONNX and its native format."""
        if "export" not in capabilities:
            pytest.skip("backend lacks the 'export' capability")

    @pytest.fixture
    def int8(self, capabilities: frozenset[str]) -> None:
        """Skips the test unless the backend writes a native INT8 model (``quantize_native_int8``)."""
        if "int8" not in capabilities:
            pytest.skip("backend lacks the 'int8' capability")


def loop_plan(total_steps: int, **changes: Any) -> LoopPlan:
    """A tiny loop's :class:`~zoo_core.runners.loop.LoopPlan`: lr 1e-3, no evaluation or saving."""
    defaults: dict[str, Any] = {
        "warmup_steps": 0,
        "peak_lr": 1e-3,
        "batch_size": 2,
        "seed": 0,
        "logging_steps": 100,
        "eval_every_steps": None,
        "eval_every_epoch": False,
        "save_steps": None,
        "keep_last": 1,
        "main_metric": None,
    }
    return LoopPlan(total_steps=total_steps, **{**defaults, **changes})
