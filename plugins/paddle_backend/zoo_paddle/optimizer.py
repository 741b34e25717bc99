"""The paddle optimizer: AdamW with global-norm clipping, the end of a step, its state files.

Shared by the three trainers (:mod:`zoo_paddle.train`, :mod:`zoo_paddle.distill`,
:mod:`zoo_paddle.width`): each backpropagates its micro-batches, then
:func:`apply_adamw` takes the norm, clips, updates and reads the step's numbers back.
The state is keyed by structured parameter names, not paddle's process-dependent
internal ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paddle
from paddle import Tensor, nn

from zoo_core.backend import TrainSpec
from zoo_core.errors import CheckpointError
from zoo_core.files import Count, check_fields, load_json
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import canonical_shapes, is_no_decay
from zoo_paddle.names import paddle_name
from zoo_paddle.parallel import mean_over_ranks

OPTIMIZER_FILE = "optimizer.pdopt"
STEP_FILE = "trainer.json"


def canonical_parameters(model: nn.Layer, prefix: str = "") -> list[tuple[str, Tensor]]:
    """``model``'s trainable parameters with their structured names (``prefix`` prepended).

    Paddle's own ``param.name`` (``linear_7.w_0``) depends on how many layers the
    process built before; structured names do not, so optimizer state is keyed by them.
    """
    return [(prefix + name, p) for name, p in model.named_parameters() if not p.stop_gradient]


def make_adamw(
    named: list[tuple[str, Tensor]], spec: TrainSpec, config: BertConfig
) -> paddle.optimizer.AdamW:
    """AdamW over ``named`` parameters of a ``config`` model (clipping is :func:`apply_adamw`'s).

    Weight decay is decoupled (``w -= lr * wd * w``, as in torch) and skips biases and
    LayerNorms (:func:`is_no_decay` of the canonical name; names outside the model,
    such as the distillation projection's, are judged as they are).  Paddle asks
    ``apply_decay_param_fun`` with the parameter's internal name, so the decision is
    made here and looked up there.
    """
    canonical = {paddle_name(c): c for c in canonical_shapes(config)}
    decayed = {p.name for n, p in named if not is_no_decay(canonical.get(n, n))}
    return paddle.optimizer.AdamW(
        learning_rate=0.0,
        beta1=spec.adam_betas[0],
        beta2=spec.adam_betas[1],
        epsilon=spec.adam_eps,
        parameters=[p for _, p in named],
        weight_decay=spec.weight_decay,
        apply_decay_param_fun=lambda name: name in decayed,
    )


def global_norm(params: Sequence[Tensor]) -> Tensor:
    """The global L2 norm of ``params``' gradients (a float32 tensor), as ``ClipGradByGlobalNorm`` takes it.

    Paddle's own ``squared_l2_norm`` kernel per gradient, summed as the clip sums them:
    five times faster on a CPU than ``sum(square(g))``, and the norm :func:`clip_gradients`
    scales by is bit for bit the one ``paddle.nn.ClipGradByGlobalNorm`` would compute.
    """
    squares = [
        paddle._C_ops.squared_l2_norm(p.grad if p.grad.dtype == paddle.float32 else p.grad.astype("float32"))
        for p in params
        if p.grad is not None
    ]
    if not squares:
        return paddle.zeros([], "float32")
    return paddle.sqrt(paddle.stack(squares).sum())


def clip_gradients(params: Sequence[Tensor], norm: Tensor, max_norm: float | None) -> None:
    """Scale the gradients in place by ``max_norm / max(norm, max_norm)``, paddle's global-norm clip.

    The same arithmetic as ``paddle.nn.ClipGradByGlobalNorm`` (float32 factor, in-place
    multiply), done with the norm the step has already taken instead of a second one, and
    skipped when ``norm <= max_norm``: the factor is then exactly 1 and the multiply
    changes nothing (on a CPU the clip and its norm cost as much as the AdamW update).
    """
    if max_norm is None or not float(norm) > max_norm:
        return
    with paddle.no_grad():
        limit = paddle.full([1], max_norm, "float32")
        factor = paddle.divide(limit, paddle.maximum(norm, limit))
        for p in params:
            if p.grad is not None:
                p.grad.multiply_(factor if p.grad.dtype == paddle.float32 else factor.astype(p.grad.dtype))


def apply_adamw(
    optimizer: paddle.optimizer.AdamW,
    params: Sequence[Tensor],
    lr: float,
    sums: dict[str, Tensor],
    max_grad_norm: float | None,
    loss_scale: float | None = None,
) -> dict[str, float]:
    """The end of a step: the gradients' norm, clipping to ``max_grad_norm``, the update at ``lr``.

    Returns ``loss`` (from ``sums``), ``grad_norm`` (before clipping) and the rest of
    ``sums``, averaged over the ranks and read back in one host sync.  With ``loss_scale``
    (fp16): the gradients are first divided by it (``check_finite_and_unscale_``, the op
    ``paddle.amp.GradScaler`` uses), and a step whose gradients are then not all finite
    makes no update and says ``skipped: 1.0`` (see :mod:`zoo_core.precision`).
    """
    extra: dict[str, float] = {}
    if loss_scale is not None:
        grads = [p.grad for p in params if p.grad is not None]
        paddle._C_ops.check_finite_and_unscale_(grads, paddle.to_tensor([loss_scale], "float32"))  # in place
    grad_norm = global_norm(params)
    if loss_scale is not None:
        extra["skipped"] = 0.0 if math.isfinite(float(grad_norm)) else 1.0
    optimizer.set_lr(lr)
    if not extra.get("skipped"):
        clip_gradients(params, grad_norm, max_grad_norm)
        optimizer.step()
    optimizer.clear_grad(set_to_zero=False)
    norm, *values = mean_over_ranks(paddle.stack([grad_norm, *sums.values()])).numpy().tolist()
    losses = dict(zip(sums, values, strict=True))
    return {"loss": losses.pop("loss"), "grad_norm": norm, **losses, **extra}


def _structured_state(optimizer: paddle.optimizer.AdamW, layer: nn.Layer, prefix: str = "") -> dict[str, Any]:
    """``optimizer.state_dict()`` with every internal parameter name replaced by its structured name."""
    names = {p.name: n for n, p in canonical_parameters(layer, prefix)}
    out: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        owner = max((n for n in names if key.startswith(n + "_")), key=len, default=None)
        out[key if owner is None else names[owner] + "@" + key[len(owner) :]] = value
    return out


def _internal_state(state: dict[str, Any], layer: nn.Layer, prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`_structured_state` for the parameters of ``layer`` as built now."""
    names = {n: p.name for n, p in canonical_parameters(layer, prefix)}
    out: dict[str, Any] = {}
    for key, value in state.items():
        structured, at, rest = key.partition("@")
        if at and structured not in names:
            raise CheckpointError(f"optimizer state for unknown parameter {structured!r}")
        out[names[structured] + rest if at else key] = value
    return out


def save_optimizer_state(
    optimizer: paddle.optimizer.AdamW, layer: nn.Layer, steps: int, directory: Path
) -> None:
    """Write ``optimizer.pdopt`` (state keyed by structured names) and ``trainer.json`` into ``directory``.

    ``layer`` holds every parameter ``optimizer`` trains (the student and, in
    distillation, the projection under a ``projection.`` prefix).
    """
    directory.mkdir(parents=True, exist_ok=True)
    paddle.save(_structured_state(optimizer, layer), str(directory / OPTIMIZER_FILE))
    (directory / STEP_FILE).write_text(json.dumps({"steps": steps}) + "\n", encoding="utf-8")


def load_optimizer_state(optimizer: paddle.optimizer.AdamW, layer: nn.Layer, directory: Path) -> int:
    """Restore what :func:`save_optimizer_state` wrote; return the step count.

    Raises :class:`CheckpointError` if the files are missing or unreadable.
    """
    path = directory / OPTIMIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no optimizer state to resume from")
    try:
        state = paddle.load(str(path))
        optimizer.set_state_dict(_internal_state(state, layer))
        step_file, context = directory / STEP_FILE, "cannot restore the optimizer state"
        steps = load_json(step_file, error=CheckpointError, context=context)
        check_fields(steps, {"steps": Count}, step_file, error=CheckpointError, context=context)
        if "steps" not in steps:
            raise CheckpointError(f"{step_file}: {context}: no steps field")
        return int(steps["steps"])
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{directory}: cannot restore the optimizer state ({exc})") from None
