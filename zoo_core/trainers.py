"""Asking a backend for a trainer: the core checks that the models fit the spec first.

Models are opaque to the core, so each function takes the configs the models were built
from.  The checks (one-line :class:`~zoo_core.errors.ModelError`) run here, once, for
every backend; a backend's ``make_*trainer`` may assume they passed.
"""

from __future__ import annotations

from typing import Any

from zoo_core.backend import Backend, DistillSpec, Trainer, TrainSpec, WidthSpec, capable
from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.student import check_distill
from zoo_core.models.width import check_width_teacher


def check_objective(config: BertConfig, spec: TrainSpec) -> None:
    """Raise :class:`ModelError` unless ``config``'s head suits ``spec.objective`` (regression: 1 output)."""
    if spec.objective == "regression" and config.num_labels != 1:
        raise ModelError(f"a regression objective needs a model with one output, not {config.num_labels}")


def make_trainer(backend: Backend, model: Any, config: BertConfig, spec: TrainSpec) -> Trainer:
    """``backend.make_trainer(model, spec)`` after :func:`check_objective` (``model`` is of ``config``)."""
    check_objective(config, spec)
    return capable(backend, "finetune").make_trainer(model, spec)


def make_distill_trainer(
    backend: Backend,
    student: Any,
    teacher: Any,
    spec: DistillSpec,
    *,
    student_config: BertConfig,
    teacher_config: BertConfig,
) -> Trainer:
    """``backend.make_distill_trainer(student, teacher, spec)`` after :func:`.student.check_distill`."""
    check_distill(student_config, teacher_config, spec)
    return capable(backend, "distill").make_distill_trainer(student, teacher, spec)


def make_width_trainer(
    backend: Backend,
    student: Any,
    teacher: Any,
    spec: WidthSpec,
    *,
    student_config: BertConfig,
    teacher_config: BertConfig,
) -> Trainer:
    """``backend.make_width_trainer(student, teacher, spec)`` after :func:`.width.check_width_teacher`."""
    check_width_teacher(student_config, teacher_config, spec.widths)
    return capable(backend, "width").make_width_trainer(student, teacher, spec)
