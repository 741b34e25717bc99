"""Trainers in the core: asking a backend for one, and the training step every backend shares.

Models are opaque to the core, so each ``make_*trainer`` takes the configs the models
were built from.  The checks (one-line :class:`~zoo_core.errors.ModelError`) run here,
once, for every backend; a backend's ``make_*trainer`` may assume they passed.

:func:`train_step` is the one accumulation loop: micro-batches, their weights, the
point where ranks synchronise, then one :meth:`~zoo_core.backend.Trainer.apply`.
:class:`LossSums` is what a backend's trainer keeps its weighted losses in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import Backend, Batch, DistillSpec, Trainer, TrainSpec, WidthSpec, capable
from zoo_core.data.batching import micro_batch_shapes, micro_batches
from zoo_core.errors import DataError, ModelError
from zoo_core.flops import StepFlops, distill_step, finetune_step, width_step
from zoo_core.models.config import BertConfig
from zoo_core.models.student import check_distill
from zoo_core.models.width import check_width_teacher
from zoo_core.precision import LossScaler


def check_objective(config: BertConfig, spec: TrainSpec) -> None:
    """Raise :class:`ModelError` unless ``config``'s head suits ``spec.objective`` (regression: 1 output)."""
    if spec.objective == "regression" and config.num_labels != 1:
        raise ModelError(f"a regression objective needs a model with one output, not {config.num_labels}")


#: the keys of a step's result that are not losses (a loss scale does not apply to them)
NOT_LOSSES = frozenset({"grad_norm", "skipped", "loss_scale"})


def train_step(
    trainer: Trainer,
    batch: Batch,
    lr: float,
    accumulation_steps: int = 1,
    scaler: LossScaler | None = None,
) -> dict[str, float]:
    """One optimizer step of ``trainer`` on ``batch`` at ``lr``: the accumulation loop, once for all.

    ``batch`` (this rank's shard under data parallelism) is cut into
    ``accumulation_steps`` micro-batches; each is backpropagated with its share of the
    examples as weight, ranks synchronise on the last, and :meth:`Trainer.apply` takes
    the norm, clips and updates.  Returns what ``apply`` returns (``loss``,
    ``grad_norm``, other losses), averaged across ranks.

    With a ``scaler`` (fp16, :mod:`zoo_core.precision`) every weight is multiplied by the
    scale, ``apply`` unscales and skips an overflowed step, the returned losses are
    divided by the scale again, the result gains ``skipped`` and ``loss_scale`` (the
    scale the step used), and the scaler moves.
    """
    scale = None if scaler is None else scaler.scale
    micros = micro_batches(batch, accumulation_steps)
    for number, (micro, weight) in enumerate(micros, start=1):
        trainer.backward(micro, weight if scale is None else weight * scale, sync=number == len(micros))
    if scaler is None or scale is None:
        return trainer.apply(lr)
    out = trainer.apply(lr, loss_scale=scale)
    out = {key: value if key in NOT_LOSSES else value / scale for key, value in out.items()}
    out["loss_scale"] = scale
    scaler.update(overflowed=bool(out.get("skipped")))
    return out


@dataclass
class Training:
    """A backend's trainer and how the core steps it: ``step(batch, lr)``, ``save_state``, ``load_state``.

    ``needs_labels``: a fine-tuning step refuses an unlabelled batch (distillation and
    width training learn from the teacher and ignore labels).  ``flops`` counts a step's
    model FLOPs (:mod:`zoo_core.flops`; None: not counted).
    """

    trainer: Trainer
    accumulation_steps: int = 1
    needs_labels: bool = False
    #: fp16's loss scale (None in fp32 and bf16); its state is saved with each checkpoint
    scaler: LossScaler | None = None
    flops: StepFlops | None = None

    @classmethod
    def of(
        cls, trainer: Trainer, spec: TrainSpec, needs_labels: bool = False, flops: StepFlops | None = None
    ) -> Training:
        """``trainer`` stepped as ``spec`` says: its accumulation steps and (fp16) loss scale."""
        scaler = None if spec.loss_scale is None else LossScaler(spec.loss_scale)
        return cls(trainer, spec.accumulation_steps, needs_labels, scaler, flops)

    def step_flops(self, shards: Sequence[np.ndarray]) -> int | None:
        """Model FLOPs of one step whose ranks train on examples of token counts ``shards`` (one per rank).

        Each shard is cut into micro-batches as :func:`train_step` cuts it; None when
        this training counts no FLOPs.
        """
        if self.flops is None:
            return None
        return sum(self.flops(micro_batch_shapes(lengths, self.accumulation_steps)) for lengths in shards)

    def step(self, batch: Batch, lr: float) -> dict[str, float]:
        """:func:`train_step` on ``batch`` at ``lr``."""
        if self.needs_labels and batch.labels is None:
            raise DataError("a training batch needs labels")
        return train_step(self.trainer, batch, lr, self.accumulation_steps, self.scaler)

    def save_state(self, directory: Path) -> None:
        """The trainer's :meth:`~zoo_core.backend.Trainer.save_state`."""
        self.trainer.save_state(directory)

    def load_state(self, directory: Path) -> None:
        """The trainer's :meth:`~zoo_core.backend.Trainer.load_state`."""
        self.trainer.load_state(directory)


class LossSums:
    """A step's losses summed over its micro-batches, each times its weight, in the backend's scalars.

    ``add({"loss": l, ...}, w)`` per micro-batch, ``take()`` in ``apply``: plain ``+`` and
    ``*`` on the framework's 0-d tensors (detached), so nothing is read back to the host
    until the trainer reads all of a step's numbers at once.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}

    def add(self, losses: Mapping[str, Any], weight: float) -> None:
        """Add ``weight`` x every value of ``losses`` to its sum (times 1 leaves a value as it is)."""
        for name, value in losses.items():
            part = value if weight == 1.0 else value * weight
            self.sums[name] = self.sums[name] + part if name in self.sums else part

    def take(self) -> dict[str, Any]:
        """The sums so far (in the order the names first came), and start again from none."""
        sums, self.sums = self.sums, {}
        return sums


def make_trainer(backend: Backend, model: Any, config: BertConfig, spec: TrainSpec) -> Training:
    """``backend.make_trainer(model, spec)`` after :func:`check_objective` (``model`` is of ``config``)."""
    check_objective(config, spec)
    trainer = capable(backend, "finetune").make_trainer(model, spec)
    return Training.of(trainer, spec, needs_labels=True, flops=finetune_step(config))


def make_distill_trainer(
    backend: Backend,
    student: Any,
    teacher: Any,
    spec: DistillSpec,
    *,
    student_config: BertConfig,
    teacher_config: BertConfig,
) -> Training:
    """``backend.make_distill_trainer(student, teacher, spec)`` after :func:`.student.check_distill`."""
    check_distill(student_config, teacher_config, spec)
    trainer = capable(backend, "distill").make_distill_trainer(student, teacher, spec)
    return Training.of(trainer, spec.train, flops=distill_step(student_config, teacher_config, spec))


def make_width_trainer(
    backend: Backend,
    student: Any,
    teacher: Any,
    spec: WidthSpec,
    *,
    student_config: BertConfig,
    teacher_config: BertConfig,
) -> Training:
    """``backend.make_width_trainer(student, teacher, spec)`` after :func:`.width.check_width_teacher`."""
    check_width_teacher(student_config, teacher_config, spec.widths)
    trainer = capable(backend, "width").make_width_trainer(student, teacher, spec)
    return Training.of(trainer, spec.train, flops=width_step(student_config, teacher_config, spec))
