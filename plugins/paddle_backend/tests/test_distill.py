"""Paddle-specific distillation tests: the projection against the reference, its saved state, errors.

The backend-neutral behaviour (losses against the numpy reference, padding, resume) is
in the conformance suite; these tests reach into :class:`PaddleDistillTrainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from zoo_paddle.distill import PROJECTION_FILE, PaddleDistillTrainer

from zoo_core.backend import Backend
from zoo_core.errors import CheckpointError, ModelError
from zoo_core.models.weights import init_weights
from zoo_core.testing import tiny_batch
from zoo_core.testing.conformance import (
    NO_DROPOUT,
    distill_spec,
    distill_student_config,
    distill_teacher_config,
)
from zoo_core.testing.distill_reference import reference_distill_losses
from zoo_core.testing.reference import reference_forward


def trainer(backend: Backend, student_hidden: int = 24, **spec_changes: Any) -> PaddleDistillTrainer:
    """A trainer from the conformance teacher into a student of ``student_hidden``."""
    teacher = backend.build_model(distill_teacher_config())
    backend.load_weights(teacher, init_weights(teacher.config, 1))
    student = backend.build_model(distill_student_config(hidden_size=student_hidden))
    backend.load_weights(student, init_weights(student.config, 2))
    stage = spec_changes.pop("stage", "intermediate")
    made = backend.make_distill_trainer(student, teacher, distill_spec(stage, **spec_changes))
    assert isinstance(made, PaddleDistillTrainer)
    return made


def test_losses_with_a_projection_match_reference(backend: Backend) -> None:
    teacher_config = distill_teacher_config(initializer_range=0.2, **NO_DROPOUT)
    student_config = distill_student_config(hidden_size=24, initializer_range=0.2, **NO_DROPOUT)
    teacher_weights, student_weights = init_weights(teacher_config, 1), init_weights(student_config, 2)
    teacher, student = backend.build_model(teacher_config), backend.build_model(student_config)
    backend.load_weights(teacher, teacher_weights)
    backend.load_weights(student, student_weights)
    spec = distill_spec("intermediate")
    made = backend.make_distill_trainer(student, teacher, spec)
    assert isinstance(made, PaddleDistillTrainer)
    projection = made.projection_weights()
    assert projection is not None and projection[0].shape == (32, 24)  # canonical [hidden_T, hidden_S]
    batch = tiny_batch(seed=3, batch_size=5, max_len=12, labels=None)
    expected = reference_distill_losses(
        reference_forward(student_weights, student_config, batch),
        reference_forward(teacher_weights, teacher_config, batch),
        batch.attention_mask,
        spec,
        projection=projection,
    )
    got = made.step(batch, lr=1e-3)
    for name in (*spec.losses, "loss"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name


def test_equal_widths_have_no_projection(backend: Backend, tmp_path: Path) -> None:
    made = trainer(backend, student_hidden=32)
    assert made.projection is None and made.projection_weights() is None
    made.step(tiny_batch(labels=None), lr=1e-3)
    made.save_state(tmp_path)
    assert not (tmp_path / PROJECTION_FILE).exists()


def test_projection_is_saved_and_restored(backend: Backend, tmp_path: Path) -> None:
    made = trainer(backend)
    made.step(tiny_batch(labels=None), lr=1e-2)
    made.save_state(tmp_path)
    assert (tmp_path / PROJECTION_FILE).is_file()
    saved = made.projection_weights()
    fresh = trainer(backend)
    assert saved is not None and fresh.projection_weights() is not None
    fresh.load_state(tmp_path)
    restored = fresh.projection_weights()
    assert restored is not None
    for want, got in zip(saved, restored, strict=True):
        assert (want == got).all()


def test_missing_projection_is_a_checkpoint_error(backend: Backend, tmp_path: Path) -> None:
    made = trainer(backend)
    made.save_state(tmp_path)
    (tmp_path / PROJECTION_FILE).unlink()
    with pytest.raises(CheckpointError, match="no projection"):
        trainer(backend).load_state(tmp_path)


def test_projection_of_another_width_is_a_checkpoint_error(backend: Backend, tmp_path: Path) -> None:
    trainer(backend, student_hidden=24).save_state(tmp_path)
    with pytest.raises(CheckpointError, match="cannot restore the projection"):
        trainer(backend, student_hidden=16).load_state(tmp_path)


def test_all_zero_weights_are_refused(backend: Backend) -> None:
    with pytest.raises(ModelError, match="non-zero weight"):
        trainer(backend, loss_weights={"logits": 1.0})


def test_prediction_stage_needs_matching_outputs(backend: Backend) -> None:
    teacher = backend.build_model(distill_teacher_config(labels=("a", "b", "c")))
    student = backend.build_model(distill_student_config())
    with pytest.raises(ModelError, match="outputs"):
        backend.make_distill_trainer(student, teacher, distill_spec("prediction"))
