"""Paddle-specific distillation tests: the projection's layout, its saved state, errors.

The backend-neutral behaviour (losses against the numpy reference, padding, resume, the
core's model checks) is in the conformance suite; these tests reach into
:class:`PaddleDistillTrainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zoo_paddle.distill import PROJECTION_FILE, PaddleDistillTrainer

from zoo_core.backend import Backend
from zoo_core.errors import CheckpointError
from zoo_core.models.student import projection_init
from zoo_core.models.weights import init_weights
from zoo_core.testing import tiny_batch
from zoo_core.testing.conformance import (
    distill_spec,
    distill_student_config,
    distill_teacher_config,
)
from zoo_core.trainers import make_distill_trainer, train_step


def trainer(backend: Backend, student_hidden: int = 24, **spec_changes: Any) -> PaddleDistillTrainer:
    """A trainer from the conformance teacher into a student of ``student_hidden``."""
    teacher = backend.build_model(distill_teacher_config())
    backend.load_weights(teacher, init_weights(teacher.config, 1))
    student = backend.build_model(distill_student_config(hidden_size=student_hidden))
    backend.load_weights(student, init_weights(student.config, 2))
    stage = spec_changes.pop("stage", "intermediate")
    made = make_distill_trainer(  # the core checks the models first, as a run does
        backend,
        student,
        teacher,
        distill_spec(stage, **spec_changes),
        student_config=student.config,
        teacher_config=teacher.config,
    ).trainer
    assert isinstance(made, PaddleDistillTrainer)
    return made


def test_projection_weights_are_canonical_and_start_from_the_core_init(backend: Backend) -> None:
    """``projection_weights()`` gives ``P`` in the canonical ``[hidden_T, hidden_S]`` layout.

    (That the losses through ``P`` match the reference is the conformance suite's
    ``test_distill_projection_starts_from_the_core_init``.)
    """
    made = trainer(backend, student_hidden=24)
    projection = made.projection_weights()
    assert projection is not None
    init = projection_init(made.student.config, made.teacher.config, made.spec.train.seed)
    assert init is not None and projection[0].shape == (32, 24)
    np.testing.assert_array_equal(projection[0], init)
    np.testing.assert_array_equal(projection[1], np.zeros(32, np.float32))


def test_equal_widths_have_no_projection(backend: Backend, tmp_path: Path) -> None:
    made = trainer(backend, student_hidden=32)
    assert made.projection is None and made.projection_weights() is None
    train_step(made, tiny_batch(labels=None), lr=1e-3)
    made.save_state(tmp_path)
    assert not (tmp_path / PROJECTION_FILE).exists()


def test_projection_is_saved_and_restored(backend: Backend, tmp_path: Path) -> None:
    made = trainer(backend)
    train_step(made, tiny_batch(labels=None), lr=1e-2)
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
