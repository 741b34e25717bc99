"""Torch-specific distillation tests: the projection, the saved state, the fast path, errors.

The backend-neutral behaviour (losses against the numpy reference, padding, resume, the
core's model checks) is in the conformance suite; these tests reach into
:class:`TorchDistillTrainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from zoo_torch.backend import TorchBackend
from zoo_torch.distill import PROJECTION_FILE, TorchDistillTrainer
from zoo_torch.model import BertForSequenceClassification

from zoo_core.backend import TrainSpec
from zoo_core.errors import CheckpointError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights
from zoo_core.testing import tiny_batch
from zoo_core.testing.conformance import (
    NO_DROPOUT,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
)
from zoo_core.testing.distill_reference import reference_distill_losses
from zoo_core.testing.reference import reference_forward
from zoo_core.trainers import make_distill_trainer, train_step


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    """A CPU torch backend."""
    return TorchBackend("cpu")


def model(
    backend: TorchBackend, config: BertConfig, seed: int
) -> tuple[BertForSequenceClassification, Weights]:
    """A model of ``config`` with seeded weights, and those weights."""
    m = backend.build_model(config)
    weights = init_weights(config, seed)
    backend.load_weights(m, weights)
    return m, weights


def trainer(backend: TorchBackend, student_hidden: int = 24, **spec_changes: Any) -> TorchDistillTrainer:
    """A trainer from the conformance teacher into a student of ``student_hidden``."""
    teacher_config, student_config = (
        distill_teacher_config(),
        distill_student_config(hidden_size=student_hidden),
    )
    teacher, _ = model(backend, teacher_config, 1)
    student, _ = model(backend, student_config, 2)
    stage = spec_changes.pop("stage", "intermediate")
    spec = distill_spec(stage, **spec_changes)
    made = make_distill_trainer(
        backend, student, teacher, spec, student_config=student_config, teacher_config=teacher_config
    ).trainer  # the core checks the models first, as a run does
    assert isinstance(made, TorchDistillTrainer)
    return made


def test_losses_with_a_projection_match_reference(backend: TorchBackend) -> None:
    teacher_config = distill_teacher_config(initializer_range=0.2, **NO_DROPOUT)
    student_config = distill_student_config(hidden_size=24, initializer_range=0.2, **NO_DROPOUT)
    teacher, teacher_weights = model(backend, teacher_config, 1)
    student, student_weights = model(backend, student_config, 2)
    spec = distill_spec("intermediate")
    distiller = backend.make_distill_trainer(student, teacher, spec)
    projection = distiller.projection_weights()
    assert projection is not None and projection[0].shape == (32, 24)
    batch = tiny_batch(seed=3, batch_size=5, labels=None)
    expected = reference_distill_losses(
        reference_forward(student_weights, student_config, batch),
        reference_forward(teacher_weights, teacher_config, batch),
        batch.attention_mask,
        spec,
        projection,
    )
    got = train_step(distiller, batch, lr=1e-3)
    for name in (*spec.losses, "loss"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name


def test_projection_is_seeded_and_leaves_the_global_rng_alone(backend: TorchBackend) -> None:
    first = trainer(backend).projection_weights()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    again = trainer(backend).projection_weights()
    assert first is not None and again is not None
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], np.zeros(32, np.float32))
    assert 0.01 < first[0].std() < 0.03
    other = trainer(backend, train=TrainSpec("classification", seed=7)).projection_weights()
    assert other is not None and not np.array_equal(other[0], first[0])
    torch.set_rng_state(state)


def test_no_projection_for_equal_widths(backend: TorchBackend, tmp_path: Path) -> None:
    distiller = trainer(backend, student_hidden=32)
    assert distiller.projection_weights() is None
    train_step(distiller, tiny_batch(labels=None), lr=1e-3)
    distiller.save_state(tmp_path)
    assert not (tmp_path / PROJECTION_FILE).exists()


def test_projection_is_trained_with_weight_decay_on_its_weight(backend: TorchBackend) -> None:
    distiller = trainer(backend)
    assert distiller.projection is not None
    decayed, plain = distiller.optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert any(p is distiller.projection.weight for p in decayed["params"])
    assert any(p is distiller.projection.bias for p in plain["params"])
    before = distiller.projection_weights()
    train_step(distiller, tiny_batch(labels=None), lr=1e-2)
    after = distiller.projection_weights()
    assert before is not None and after is not None
    assert not np.array_equal(before[0], after[0]) and not np.array_equal(before[1], after[1])


def test_saved_state_holds_the_projection(backend: TorchBackend, tmp_path: Path) -> None:
    distiller = trainer(backend)
    train_step(distiller, tiny_batch(labels=None), lr=1e-2)
    distiller.save_state(tmp_path)
    assert (tmp_path / PROJECTION_FILE).is_file()
    fresh = trainer(backend)
    fresh.load_state(tmp_path)
    trained, restored = distiller.projection_weights(), fresh.projection_weights()
    assert trained is not None and restored is not None
    np.testing.assert_array_equal(restored[0], trained[0])
    (tmp_path / PROJECTION_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"projection\.pt"):
        trainer(backend).load_state(tmp_path)


def test_prediction_stage_asks_for_logits_only(backend: TorchBackend) -> None:
    distiller = trainer(backend, stage="prediction")
    calls: list[dict[str, Any]] = []
    for attr in ("student_forward", "teacher_forward"):
        forward = getattr(distiller, attr)

        def recording(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return _forward(*args, **kwargs)

        setattr(distiller, attr, recording)
    out = train_step(distiller, tiny_batch(labels=None), lr=1e-3)
    assert set(out) == {"loss", "grad_norm", "logits"}
    assert len(calls) == 2  # one forward per model
    assert not any(c["output_hidden_states"] or c["output_attentions"] for c in calls)


def test_teacher_gets_no_gradient_and_stays_in_eval_mode(backend: TorchBackend) -> None:
    distiller = trainer(backend)
    distiller.teacher.train()
    train_step(distiller, tiny_batch(labels=None), lr=1e-3)
    assert not distiller.teacher.training and distiller.student.training
    assert all(p.grad is None for p in distiller.teacher.parameters())
