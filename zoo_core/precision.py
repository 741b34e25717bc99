"""Mixed precision, defined once: what ``train.precision`` means on every backend.

``fp32`` (the default) computes everything in float32.  ``bf16`` and ``fp16`` run the
forward and backward passes under the framework's autocast (its own list of ops that
run in low precision: matmuls and linear layers; reductions, softmax, LayerNorm and the
losses stay float32).  In every precision the master weights, the gradients the
optimizer sees, the optimizer state and every checkpoint are float32, so a checkpoint
does not depend on the precision it was trained in.

fp16's narrow range needs loss scaling (bf16 has float32's range and needs none).  The
core owns the scale, so it behaves the same on every backend (:class:`LossScaler`, the
rule of ``torch.amp.GradScaler``):

* each micro-batch's loss is multiplied by ``scale`` before its backward pass (the core
  passes ``weight * scale`` as the micro-batch's weight; the losses a step reports are
  divided by it again, exactly, since the scale is a power of two);
* the trainer's ``apply(lr, loss_scale=scale)`` divides the gradients by ``scale``
  *before* the global norm and clipping, so ``max_grad_norm`` applies to the true
  gradients;
* a step *overflows* when any unscaled gradient is not finite (equivalently: their global
  norm is not; under data parallelism the norm is of the rank-averaged gradients, so every
  rank sees the same verdict).  An overflowed step changes no weight and no optimizer state
  (AdamW's step count included), and reports ``skipped = 1``;
* the schedule still advances: an overflowed step counts as a step (its learning rate is
  spent, as with ``torch.amp.GradScaler`` under a scheduler);
* after every step the scale moves: on overflow it is multiplied by ``backoff_factor`` and
  the count of good steps restarts; after ``growth_interval`` good steps in a row it is
  multiplied by ``growth_factor``.  A fixed scale (``loss_scale: <number>``) never moves;
  ``loss_scale: none`` trains fp16 without scaling (overflowed steps are still skipped);
* 50 overflowed steps in a row stop the run (``zoo_core.runners.loop.MAX_SKIPPED_IN_A_ROW``):
  its losses are then not finite at any scale (bad data, a diverged model);
* the scaler's state (scale, good steps) is saved in every step checkpoint's
  ``trainer_state.json``, so a resumed run continues with the same scale.

MindSpore's names map onto these: ``loss_scale_value`` = ``init_scale``,
``scale_factor`` = ``growth_factor`` (and 1 / ``backoff_factor``: MindSpore has one
factor for both), ``scale_window`` = ``growth_interval`` (``DynamicLossScaleUpdateCell``,
which also never backs the scale off below 1; the core's scale has no floor, the
50-overflows rule stops such a run).  The mindspore backend does not use that cell: the
core's scaler drives it like every other backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class LossScaleSpec:
    """fp16 loss scaling: dynamic (the defaults are ``torch.amp.GradScaler``'s) or fixed.

    ``dynamic`` False keeps ``init_scale`` for the whole run (1.0: no scaling).
    """

    dynamic: bool = True
    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000


@dataclass
class LossScaler:
    """The loss scale of a run and how it moves (see the module docstring); plain Python, no framework."""

    spec: LossScaleSpec
    scale: float = 0.0
    #: good (finite) steps since the scale last moved
    good_steps: int = 0

    def __post_init__(self) -> None:
        if self.scale == 0.0:
            self.scale = float(self.spec.init_scale)

    def update(self, overflowed: bool) -> None:
        """Move the scale after a step: back off on overflow, grow after ``growth_interval`` good steps."""
        if not self.spec.dynamic:
            return
        if overflowed:
            self.scale *= self.spec.backoff_factor
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps == self.spec.growth_interval:
            self.scale *= self.spec.growth_factor
            self.good_steps = 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: ``{"scale": ..., "good_steps": ...}``."""
        return {"scale": self.scale, "good_steps": self.good_steps}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`state` returned."""
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])

    def spec_record(self) -> dict[str, Any]:
        """The spec as plain data (for logs and result files)."""
        return asdict(self.spec)


def train_sections(recipe: Any) -> list[tuple[str, Any]]:
    """Every ``train`` section of ``recipe`` with where it sits (``train``, ``stages.1.train``)."""
    if hasattr(recipe, "stages"):
        return [(f"stages.{i}.train", stage.train) for i, stage in enumerate(recipe.stages)]
    return [("train", recipe.train)]


def loss_scale_spec(train: Any) -> LossScaleSpec | None:
    """The loss scaling a recipe's ``train`` section asks for (None unless ``precision: fp16``)."""
    if train.precision != "fp16":
        return None
    if train.loss_scale == "dynamic":
        return LossScaleSpec(dynamic=True, **train.loss_scaling.model_dump())
    if train.loss_scale == "none":
        return LossScaleSpec(dynamic=False, init_scale=1.0)
    return LossScaleSpec(dynamic=False, init_scale=float(train.loss_scale))
