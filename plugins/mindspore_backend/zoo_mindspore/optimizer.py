"""The MindSpore optimizer: AdamW (as torch's), clipping and the update cell, writing parameters, state files.

Shared by the three trainers (:mod:`zoo_mindspore.train`, :mod:`zoo_mindspore.distill`,
:mod:`zoo_mindspore.width`), whose compiled steps end in :class:`Update`: the rank
reduction, the gradients' global norm, clipping and the optimizer update.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from zoo_core.backend import TrainSpec
from zoo_core.errors import CheckpointError
from zoo_core.models.weights import is_no_decay
from zoo_mindspore.parallel import grad_reducer

OPTIMIZER_FILE = "optimizer.npz"
#: added to the gradient norm before dividing, as torch.nn.utils.clip_grad_norm_ does
CLIP_EPS = 1e-6


def write_parameter(param: Parameter, value: Tensor) -> None:
    """Give ``param`` the value ``value`` so that a compiled step that already ran sees it too.

    In MindSpore 2.10, ``Parameter.set_data`` after a ``mindspore.jit`` graph has run once
    changes the host copy only: the graph keeps computing with the old value (found here:
    the learning rate stayed at the first step's).  ``ops.assign`` writes the device copy
    the graph reads; ``set_data`` remains for a parameter not materialised yet.
    """
    if param.has_init or tuple(param.shape) != tuple(value.shape) or param.dtype != value.dtype:
        param.set_data(value)
    else:
        ops.assign(param, value)


_adamw_update = ops.MultitypeFuncGraph("zoo_adamw_update")


@_adamw_update.register("Function", *["Tensor"] * 7, "Bool", *["Tensor"] * 4)
def _adamw_one(
    adam: Any,
    beta1_power: Tensor,
    beta2_power: Tensor,
    lr: Tensor,
    beta1: Tensor,
    beta2: Tensor,
    eps: Tensor,
    keep: Tensor,
    decay: bool,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    grad: Tensor,
) -> Tensor:
    """torch.optim.AdamW on one parameter: decay (``param *= keep``), then MindSpore's fused Adam kernel.

    The kernel steps ``param -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``; with
    ``eps = torch_eps * sqrt(1 - b2^t)`` that is torch's ``lr / bc1 * m / (sqrt(v) / sqrt(bc2) + torch_eps)``.
    """
    if decay:
        param = ops.depend(param, ops.assign(param, param * keep))
    return adam(param, m, v, beta1_power, beta2_power, lr, beta1, beta2, eps, grad)


class AdamW(nn.Cell):
    """Bias-corrected AdamW, ``torch.optim.AdamW``'s update, as one ``HyperMap`` over the parameters.

    MindSpore's ``experimental.optim.AdamW`` computes the same update but makes a compiled
    step much slower to compile (about 19 s against 8 s for a tiny BERT on 2 CPU cores).
    The learning rate is a Parameter set before each step (no recompilation); the update
    count ``step`` is a Parameter counted inside the step, and the bias corrections are
    computed from it there (as ``experimental.optim.AdamW`` does).
    """

    def __init__(self, params: list[Parameter], decay: list[bool], spec: TrainSpec) -> None:
        super().__init__(auto_prefix=False)
        self.params = ms.ParameterTuple(params)
        self.moments1 = self.params.clone(prefix="adam_m", init="zeros")
        self.moments2 = self.params.clone(prefix="adam_v", init="zeros")
        self.decay_flags = tuple(decay)
        beta1, beta2 = spec.adam_betas
        self.beta1 = Tensor(float(beta1), ms.float32)
        self.beta2 = Tensor(float(beta2), ms.float32)
        self.eps = Tensor(float(spec.adam_eps), ms.float32)
        self.weight_decay = float(spec.weight_decay)
        self.step = Parameter(Tensor(0.0, ms.float32), name="adam_step")
        self.lr = Parameter(Tensor(0.0, ms.float32), name="adam_lr")
        self.hyper_map = ops.HyperMap()
        self.adam = ops.operations.Adam()

    def construct(self, grads: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        step = self.step + 1.0
        ops.assign(self.step, step)
        lr = self.lr * 1.0
        keep = 1.0 - lr * self.weight_decay
        beta1_power = ops.pow(self.beta1, step)
        beta2_power = ops.pow(self.beta2, step)
        eps = self.eps * ops.sqrt(1.0 - beta2_power)
        update = ops.partial(
            _adamw_update, self.adam, beta1_power, beta2_power, lr, self.beta1, self.beta2, eps, keep
        )
        return self.hyper_map(update, self.decay_flags, self.params, self.moments1, self.moments2, grads)


class Optimizer:
    """AdamW over named parameters, no weight decay on biases and LayerNorms, lr set per step.

    ``kind`` ``"adamw"`` is :class:`AdamW` (bias-corrected, the same update as
    ``torch.optim.AdamW``); ``"adamweightdecay"`` is ``mindspore.nn.AdamWeightDecay`` (no
    bias correction, as in BERT's and MindSpore's TinyBERT code: early steps move about 3x
    further at the same lr).
    """

    def __init__(self, named: Sequence[tuple[str, Parameter]], spec: TrainSpec, kind: str) -> None:
        decay = [p for n, p in named if not is_no_decay(n)]
        no_decay = [p for n, p in named if is_no_decay(n)]
        beta1, beta2 = spec.adam_betas
        self.adamw: AdamW | None = None
        if kind == "adamw":
            self.adamw = AdamW(decay + no_decay, [True] * len(decay) + [False] * len(no_decay), spec)
            self.cell: nn.Cell = self.adamw
            self.lrs: list[Parameter] = [self.adamw.lr]
            self.params = decay + no_decay
            self.state = [*self.adamw.moments1, *self.adamw.moments2, self.adamw.step]
            return
        groups = [
            {"params": decay, "weight_decay": float(spec.weight_decay)},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.cell = nn.AdamWeightDecay(
            groups,
            learning_rate=Tensor(0.0, ms.float32),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(spec.adam_eps),
        )
        self.lrs = [self.cell.learning_rate]
        #: in the optimizer's order (decayed group first): gradients must come in this order
        self.params = list(self.cell.parameters)
        own = {id(p) for p in self.params}
        #: the optimizer's own state (moments, step count), in a fixed order
        self.state = [p for _, p in self.cell.parameters_and_names() if id(p) not in own]

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of the next step (a Parameter update: no recompilation)."""
        value = Tensor(float(lr), ms.float32)
        for param in self.lrs:
            write_parameter(param, value)

    def save(self, path: Path) -> None:
        """Write the state (moments and step count) to ``path`` as npz."""
        arrays = {f"{i:05d}": p.asnumpy() for i, p in enumerate(self.state)}
        with open(path, "wb") as f:
            np.savez(f, names=np.array([p.name for p in self.state]), **arrays)

    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote; raises :class:`CheckpointError` if it does not fit."""
        try:
            with np.load(path) as data:
                arrays = [data[f"{i:05d}"] for i in range(len(self.state))]
                extra = len(data.files) - 1 - len(self.state)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no optimizer state to resume from") from None
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: cannot restore the optimizer state ({exc})") from None
        if extra:
            raise CheckpointError(f"{path}: holds {extra} more optimizer tensors than this optimizer")
        for param, array in zip(self.state, arrays, strict=True):
            if tuple(array.shape) != tuple(param.shape):
                raise CheckpointError(
                    f"{path}: {param.name} has shape {tuple(array.shape)}, expected {tuple(param.shape)}"
                )
            write_parameter(param, Tensor(array, param.dtype))


def _squared_sum(g: Tensor) -> Tensor:
    """``sum(g * g)``; a matrix's rows first: MindSpore's CPU sum over all axes at once is ~5x slower."""
    if g.ndim >= 2:
        return ops.sum(ops.sum(g * g, -1))
    return ops.sum(g * g)


def global_norm(grads: tuple[Tensor, ...]) -> Tensor:
    """The L2 norm of all ``grads`` together."""
    return ops.sqrt(ops.stack([_squared_sum(g) for g in grads]).sum())


def clipped(grads: tuple[Tensor, ...], norm: Tensor, max_grad_norm: float) -> tuple[Tensor, ...]:
    """``grads`` clipped to ``max_grad_norm`` by torch's rule: times ``max / (norm + 1e-6)`` when below 1."""
    coef = ops.clamp(max_grad_norm / (norm + CLIP_EPS), max=1.0)
    return tuple([g * coef for g in grads])


class Update(nn.Cell):
    """``grads -> norm``: what a step does once it has the gradients of the optimizer's parameters.

    Under data parallelism the gradients are first averaged over the ranks by
    ``nn.DistributedGradReducer`` (:func:`zoo_mindspore.parallel.grad_reducer`); then their
    global norm (before clipping), clipping to ``max_grad_norm`` (torch's rule: scale by
    ``max / (norm + 1e-6)`` when that is below 1) and the optimizer update.
    """

    def __init__(self, optimizer: Optimizer, max_grad_norm: float | None) -> None:
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer.cell
        self.reducer: Any = grad_reducer(optimizer.params)
        self.reduce = self.reducer is not None
        self.clip = max_grad_norm is not None
        self.max_grad_norm = float(max_grad_norm or 0.0)

    def construct(self, grads: tuple[Tensor, ...]) -> Tensor:
        if self.reduce:
            grads = self.reducer(grads)
        norm = global_norm(grads)
        if self.clip:
            grads = clipped(grads, norm, self.max_grad_norm)
        self.optimizer(grads)
        return norm


def save_trainer_state(optimizer: Optimizer, directory: Path) -> None:
    """Write a trainer's ``optimizer.npz`` (moments, step count) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    optimizer.save(directory / OPTIMIZER_FILE)


def load_trainer_state(optimizer: Optimizer, directory: Path) -> None:
    """Restore what :func:`save_trainer_state` wrote; raises :class:`CheckpointError` if unreadable."""
    optimizer.load(directory / OPTIMIZER_FILE)
