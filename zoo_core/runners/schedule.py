"""Learning-rate schedule and step counting, shared by every backend."""

from __future__ import annotations

import math


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Learning rate for 0-based ``step``: linear warm-up to ``peak_lr``, then linear decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    remaining = total_steps - step
    return peak_lr * max(0.0, remaining / max(1, total_steps - warmup_steps))


def total_steps(batches_per_epoch: int, num_epochs: float | None, max_steps: int | None) -> int:
    """Steps a run takes: ``max_steps`` when given, else epochs × batches (rounded up)."""
    if max_steps is not None:
        return max_steps
    assert num_epochs is not None
    return max(1, math.ceil(num_epochs * batches_per_epoch))


def warmup_steps(total: int, ratio: float, steps: int | None) -> int:
    """Warm-up length: explicit ``steps`` or ``ratio`` of the total."""
    return steps if steps is not None else round(ratio * total)
