"""The MindSpore :class:`~zoo_core.backend.Trainer`: AdamW, clipping and a compiled (GRAPH mode) step.

The step is ``mindspore.value_and_grad`` + global-norm clipping + the optimizer,
compiled once per input shape by ``mindspore.jit`` (``mode: graph``, the default) or run
eagerly (``mode: pynative``).  To keep compiles rare, every batch's sequence axis is
padded up to a multiple of :data:`PAD_MULTIPLE` (never past the position table), which
changes no loss: padding is masked everywhere.  The learning rate lives in a
``Parameter`` written (with ``ops.assign``: see :func:`write_parameter`) before each step,
so a new rate never recompiles.

Dropout uses the core's masks (:mod:`zoo_core.dropout`), keyed by ``(spec.seed,
batch.step, stream, example)`` and drawn at the padded length the step runs, passed in
as an input of the step (see :mod:`zoo_mindspore.model`).  The trainer keeps no random
state: a resumed run draws the same masks as an uninterrupted one.

With ``accumulation_steps`` k > 1 the core cuts a batch into k micro-batches
(:func:`zoo_core.trainers.train_step`) whose gradients, weighted by their share, are
summed in buffers before one update (:class:`Stepper`).  Under data parallelism the
gradients are averaged over the ranks once per step by ``nn.DistributedGradReducer``
inside the (compiled) update, and the reported numbers are averaged over the ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from zoo_core.backend import Batch, TrainSpec
from zoo_core.errors import CheckpointError
from zoo_core.models.weights import is_no_decay
from zoo_core.trainers import LossSums
from zoo_mindspore.model import BertForSequenceClassification, dropout_inputs
from zoo_mindspore.parallel import grad_reducer, mean_over_ranks

OPTIMIZER_FILE = "optimizer.npz"
#: sequence lengths are padded up to a multiple of this inside the backend (fewer compiles)
PAD_MULTIPLE = 16
#: added to the gradient norm before dividing, as torch.nn.utils.clip_grad_norm_ does
CLIP_EPS = 1e-6

# ---- batches -----------------------------------------------------------------------------


def padded_length(length: int, limit: int, multiple: int = PAD_MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple``, but not past ``limit`` (nor below ``length``)."""
    return max(length, min(-(-length // multiple) * multiple, limit))


def pad_to(batch: Batch, length: int) -> Batch:
    """``batch`` with its sequence axis padded (token 0, mask 0) to ``length`` positions.

    Labels, indices and step are kept (they key the batch's dropout masks).
    """
    extra = length - batch.input_ids.shape[1]
    if extra <= 0:
        return batch

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(np.asarray(a), ((0, 0), (0, extra)))

    return replace(
        batch,
        input_ids=pad(batch.input_ids),
        token_type_ids=pad(batch.token_type_ids),
        attention_mask=pad(batch.attention_mask),
    )


def batch_tensors(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """``input_ids``, ``token_type_ids`` and ``attention_mask`` as int32 tensors."""
    return (
        Tensor(np.asarray(batch.input_ids, np.int32)),
        Tensor(np.asarray(batch.token_type_ids, np.int32)),
        Tensor(np.asarray(batch.attention_mask, np.int32)),
    )


# ---- parameters ----------------------------------------------------------------------------


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


# ---- optimizers ----------------------------------------------------------------------------


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


# ---- the step ------------------------------------------------------------------------------


def _squared_sum(g: Tensor) -> Tensor:
    """``sum(g * g)``; a matrix's rows first: MindSpore's CPU sum over all axes at once is ~5x slower."""
    if g.ndim >= 2:
        return ops.sum(ops.sum(g * g, -1))
    return ops.sum(g * g)


def global_norm(grads: tuple[Tensor, ...]) -> Tensor:
    """The L2 norm of all ``grads`` together."""
    return ops.sqrt(ops.stack([_squared_sum(g) for g in grads]).sum())


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
        self.reducer = grad_reducer(optimizer.params)
        self.reduce = self.reducer is not None
        self.clip = max_grad_norm is not None
        self.max_grad_norm = float(max_grad_norm or 0.0)

    def construct(self, grads: tuple[Tensor, ...]) -> Tensor:
        if self.reduce:
            grads = self.reducer(grads)
        norm = global_norm(grads)
        if self.clip:
            coef = ops.clamp(self.max_grad_norm / (norm + CLIP_EPS), max=1.0)
            grads = tuple([g * coef for g in grads])
        self.optimizer(grads)
        return norm


class TrainStep(nn.Cell):
    """One whole step over ``loss_net(*inputs) -> (loss, aux)``: ``(*inputs) -> (loss, norm, aux)``.

    The gradients of ``loss`` with respect to the optimizer's parameters, then
    :class:`Update`.  A Cell, not a closure: MindSpore caches compiled closures by their
    code, and two steps with different clipping could then share one graph.
    """

    def __init__(self, loss_net: nn.Cell, optimizer: Optimizer, update: Update) -> None:
        super().__init__(auto_prefix=False)
        self.loss_net = loss_net
        self.update = update
        self.grad_fn = ms.value_and_grad(loss_net, None, optimizer.params, has_aux=True)

    def construct(self, *inputs: Any) -> tuple[Tensor, Tensor, Any]:
        (loss, aux), grads = self.grad_fn(*inputs)
        norm = self.update(grads)
        return loss, norm, aux


_add_scaled = ops.MultitypeFuncGraph("zoo_add_scaled")


@_add_scaled.register("Tensor", "Tensor", "Tensor")
def _add_scaled_one(scale: Tensor, total: Tensor, grad: Tensor) -> Tensor:
    """``total += scale * grad`` (``total`` a Parameter)."""
    return ops.assign_add(total, grad * scale)


_read = ops.MultitypeFuncGraph("zoo_read")


@_read.register("Tensor")
def _read_one(total: Tensor) -> Tensor:
    """A copy of ``total``'s value (read before the buffer is zeroed)."""
    return total * 1.0


_zero = ops.MultitypeFuncGraph("zoo_zero")


@_zero.register("Tensor")
def _zero_one(total: Tensor) -> Tensor:
    """``total = 0`` (``total`` a Parameter)."""
    return ops.assign(total, ops.zeros_like(total))


class Accumulate(nn.Cell):
    """One micro-batch: ``(scale, *inputs) -> (loss, aux)``; adds ``scale`` x its gradients to ``sums``.

    ``sums`` (Parameters shaped like the optimizer's) are MindSpore's usual gradient
    accumulation buffers; :class:`ApplySums` makes the step's update from them.
    """

    def __init__(self, loss_net: nn.Cell, optimizer: Optimizer, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.loss_net = loss_net
        self.sums = sums
        self.grad_fn = ms.value_and_grad(loss_net, None, optimizer.params, has_aux=True)
        self.hyper_map = ops.HyperMap()

    def construct(self, scale: Tensor, *inputs: Any) -> tuple[Tensor, Any]:
        (loss, aux), grads = self.grad_fn(*inputs)
        self.hyper_map(ops.partial(_add_scaled, scale), self.sums, grads)
        return loss, aux


class ApplySums(nn.Cell):
    """The end of an accumulated step: ``() -> norm``, :class:`Update` on ``sums``, then ``sums = 0``."""

    def __init__(self, update: Update, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.update = update
        self.sums = sums
        self.hyper_map = ops.HyperMap()

    def construct(self) -> Tensor:
        grads = self.hyper_map(_read, self.sums)
        norm = self.update(grads)
        self.hyper_map(_zero, self.sums)
        return norm


#: every compiled cell made in this process, kept alive on purpose: MindSpore 2.10 finds a
#: compiled graph again by the object's id, and a new step that reused a freed step's id
#: ran the old step's graph ("The parameters number of the function is 3, but ...")
_COMPILED_STEPS: list[nn.Cell] = []


def _compiled(cell: nn.Cell, compile: bool) -> Callable[..., Any]:
    """``cell`` as one ``mindspore.jit`` graph when ``compile``, else itself (run eagerly)."""
    if not compile:
        return cell
    _COMPILED_STEPS.append(cell)
    return ms.jit(cell)


#: one micro-batch of a step: its share of the batch's examples and the loss net's inputs
Micro = tuple[float, tuple[Any, ...]]


class Stepper:
    """One optimizer step over ``loss_net(*inputs) -> (loss, aux)``, as ``backward`` calls then ``apply``.

    With one micro-batch per step (``accumulation_steps`` 1) ``backward`` only keeps the
    inputs and ``apply`` runs one :class:`TrainStep` graph (gradients, clipping and the
    update fused).  With more, each ``backward`` runs :class:`Accumulate` (its gradients,
    times its share, added to buffers) and ``apply`` runs :class:`ApplySums`: reduce over
    the ranks once, clip once, update once.  The sum of the shares' gradients is the whole
    batch's gradient, so the update is the whole batch's.  Compiled (``mindspore.jit``)
    when ``compile``, one graph per input shape.
    """

    def __init__(
        self,
        loss_net: nn.Cell,
        optimizer: Optimizer,
        max_grad_norm: float | None,
        accumulation_steps: int,
        compile: bool,
    ) -> None:
        update = Update(optimizer, max_grad_norm)
        self.whole: Callable[..., Any] | None = None
        self.pending: tuple[Any, ...] | None = None
        self.outs: list[tuple[float, Tensor, Any]] = []
        if accumulation_steps == 1:
            self.whole = _compiled(TrainStep(loss_net, optimizer, update), compile)
            return
        sums = ms.ParameterTuple(optimizer.params).clone(prefix="grad_sum", init="zeros")
        self.accumulate = _compiled(Accumulate(loss_net, optimizer, sums), compile)
        self.apply_sums = _compiled(ApplySums(update, sums), compile)

    def backward(self, share: float, inputs: tuple[Any, ...]) -> None:
        """One micro-batch: its gradients times ``share`` into the buffers (kept for ``apply`` when fused)."""
        if self.whole is not None:
            self.pending = inputs
            return
        loss, aux = self.accumulate(Tensor(share, ms.float32), *inputs)
        self.outs.append((share, loss, aux))

    def apply(self) -> tuple[list[tuple[float, Tensor, Any]], Tensor]:
        """The update; returns each micro-batch's ``(share, loss, aux)`` and the gradient norm."""
        if self.whole is not None:
            assert self.pending is not None, "apply before backward"
            loss, norm, aux = self.whole(*self.pending)
            self.pending = None
            return [(1.0, loss, aux)], norm
        outs, self.outs = self.outs, []
        return outs, self.apply_sums()


def step_result(
    outs: list[tuple[float, Tensor, Any]], norm: Tensor, names: Sequence[str] = ()
) -> dict[str, float]:
    """A step's ``loss``, ``grad_norm`` and named losses, averaged over the ranks in one host sync.

    ``outs`` holds each micro-batch's share, loss and aux (with ``names``: that many
    scalar losses, in that order); each is summed weighted by the shares
    (:class:`zoo_core.trainers.LossSums`): the whole batch's mean.
    """
    sums = LossSums()
    for share, loss, aux in outs:
        sums.add(dict(enumerate([loss, *(aux if names else ())])), share)
    values = [ops.reshape(v, ()) for v in sums.take().values()]
    norm_value, loss_value, *named = mean_over_ranks(ops.stack([ops.reshape(norm, ()), *values])).asnumpy()
    return {
        "loss": float(loss_value),
        "grad_norm": float(norm_value),
        **{n: float(v) for n, v in zip(names, named, strict=True)},
    }


class ClassifierLoss(nn.Cell):
    """Mean cross-entropy (classification) or mean squared error on the one output (regression)."""

    def __init__(self, model: BertForSequenceClassification, regression: bool) -> None:
        super().__init__()
        self.model = model
        self.regression = regression

    def construct(
        self, input_ids: Tensor, token_type_ids: Tensor, mask: Tensor, labels: Tensor, keep: Any
    ) -> tuple[Tensor, Tensor]:
        logits = self.model(input_ids, token_type_ids, mask, keep)[0]
        if self.regression:
            loss = ops.mean(ops.square(logits[:, 0] - labels))
        else:
            log_probs = ops.log_softmax(logits, -1)
            picked = ops.gather_elements(log_probs, 1, labels.reshape(-1, 1))
            loss = -ops.mean(picked)
        return loss, logits


class SteppedTrainer:
    """What the MindSpore trainers share: ``backward`` and ``apply`` around a :class:`Stepper`.

    A trainer sets ``optimizer``, ``stepper``, ``trained`` (the cell in training mode),
    ``frozen`` (a teacher, in inference mode, or None) and ``loss_names`` (the scalar
    losses each micro-batch's aux holds, in order; none for fine-tuning), and says how a
    batch becomes the loss net's inputs (``inputs``).
    """

    optimizer: Optimizer
    stepper: Stepper
    trained: nn.Cell
    frozen: nn.Cell | None = None
    loss_names: Sequence[str] = ()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """``weight`` x ``batch``'s gradients into the step (run in :meth:`apply` when fused).

        ``sync`` is not needed: the compiled update reduces over the ranks itself.
        """
        self.trained.set_train(True)
        if self.frozen is not None:
            self.frozen.set_train(False)
        self.stepper.backward(weight, self.inputs(batch))

    def apply(self, lr: float) -> dict[str, float]:
        """The update at ``lr``; returns ``loss``, ``grad_norm`` and ``loss_names`` (over every rank)."""
        self.optimizer.set_lr(lr)
        return step_result(*self.stepper.apply(), self.loss_names)

    def inputs(self, batch: Batch) -> tuple[Any, ...]:
        """The loss net's inputs for ``batch``."""
        raise NotImplementedError

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.npz`` (moments, step count) into ``directory``."""
        save_trainer_state(self.optimizer, Path(directory))

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        load_trainer_state(self.optimizer, Path(directory))


class MindSporeTrainer(SteppedTrainer):
    """Trains ``model`` in place with AdamW, one micro-batch's ``backward`` at a time, then ``apply``.

    ``options`` are the validated ``backend_options.mindspore`` (``mode``, ``optimizer``).
    Dropout uses the core's masks keyed by ``(spec.seed, batch.step, example)``
    (:mod:`zoo_core.dropout`): the batch needs ``indices`` when the model has dropout.
    """

    def __init__(
        self, model: BertForSequenceClassification, spec: TrainSpec, options: Mapping[str, Any]
    ) -> None:
        self.model = model
        self.spec = spec
        self.regression = spec.objective == "regression"
        self.optimizer = Optimizer(list(model.parameters_and_names()), spec, options["optimizer"])
        self.loss_net = ClassifierLoss(model, self.regression)
        compile = options["mode"] == "graph"
        self.stepper = Stepper(
            self.loss_net, self.optimizer, spec.max_grad_norm, spec.accumulation_steps, compile
        )
        self.trained = model

    def inputs(self, batch: Batch) -> tuple[Any, ...]:
        """The loss net's inputs for ``batch``: padded tensors, labels, its dropout masks at that length."""
        assert batch.labels is not None
        batch = pad_to(
            batch, padded_length(batch.input_ids.shape[1], self.model.config.max_position_embeddings)
        )
        labels = Tensor(np.asarray(batch.labels, np.float32 if self.regression else np.int32))
        keep = dropout_inputs(self.model.config, batch, self.spec.seed)
        return (*batch_tensors(batch), labels, keep)


def save_trainer_state(optimizer: Optimizer, directory: Path) -> None:
    """Write a trainer's ``optimizer.npz`` (moments, step count) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    optimizer.save(directory / OPTIMIZER_FILE)


def load_trainer_state(optimizer: Optimizer, directory: Path) -> None:
    """Restore what :func:`save_trainer_state` wrote; raises :class:`CheckpointError` if unreadable."""
    optimizer.load(directory / OPTIMIZER_FILE)
