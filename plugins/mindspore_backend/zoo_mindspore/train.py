"""The MindSpore fine-tuning :class:`~zoo_core.backend.Trainer` and the compiled (GRAPH mode) step.

The step is ``mindspore.value_and_grad`` + global-norm clipping + the optimizer,
compiled once per input shape by ``mindspore.jit`` (``mode: graph``, the default) or run
eagerly (``mode: pynative``).  To keep compiles rare, every batch's sequence axis is
padded up to a multiple of :data:`zoo_mindspore.model.PAD_MULTIPLE` (never past the
position table), which changes no loss: padding is masked everywhere.  The learning
rate lives in a ``Parameter`` written (with ``ops.assign``: see
:func:`zoo_mindspore.optimizer.write_parameter`) before each step, so a new rate never
recompiles.

Dropout uses the core's masks (:mod:`zoo_core.dropout`), keyed by ``(spec.seed,
batch.step, stream, example)`` and drawn at the padded length the step runs, passed in
as an input of the step (see :mod:`zoo_mindspore.model`).  The trainer keeps no random
state: a resumed run draws the same masks as an uninterrupted one.

With ``accumulation_steps`` k > 1 the core cuts a batch into k micro-batches
(:func:`zoo_core.trainers.train_step`) whose gradients, weighted by their share, are
summed in buffers before one update (:class:`Stepper`).  Under data parallelism the
gradients are averaged over the ranks once per step by ``nn.DistributedGradReducer``
inside the (compiled) update, and the reported numbers are averaged over the ranks.

Mixed precision (:mod:`zoo_core.precision`): the loss nets run the model's matmuls in
``train.precision``'s dtype (:func:`zoo_mindspore.model.compute_dtype`; the teachers
too), weights, gradients and optimizer state staying float32.  With a loss scale (fp16;
the core passes ``weight * scale`` to ``backward``) every step takes the accumulating
path, whatever ``accumulation_steps``: each micro-batch backpropagates ``weight * loss``
(:class:`ScaledAccumulate`: the low-precision backward sees the scaled gradients) into
the buffers, then ``apply`` runs :class:`Unscale` (reduce over the ranks, divide by the
scale, the global norm), reads the norm on the host and either runs :class:`UpdateSums`
(clip, update, clear) or, when the norm is not finite, only :class:`ZeroSums`: an
overflowed step changes no weight and no optimizer state (AdamW's step count included).
Without a loss scale (fp32, bf16) the steps are as before: fused when one micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from zoo_core.backend import Batch, TrainSpec
from zoo_core.errors import BackendError
from zoo_core.trainers import LossSums
from zoo_mindspore.model import (
    BertForSequenceClassification,
    batch_tensors,
    compute_dtype,
    dropout_inputs,
    pad_to,
    padded_length,
)
from zoo_mindspore.optimizer import (
    Optimizer,
    Update,
    clipped,
    global_norm,
    load_trainer_state,
    save_trainer_state,
)
from zoo_mindspore.parallel import grad_reducer, mean_over_ranks

# ---- the step ------------------------------------------------------------------------------


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


_add = ops.MultitypeFuncGraph("zoo_add")


@_add.register("Tensor", "Tensor")
def _add_one(total: Tensor, grad: Tensor) -> Tensor:
    """``total += grad`` (``total`` a Parameter)."""
    return ops.assign_add(total, grad)


_times = ops.MultitypeFuncGraph("zoo_times")


@_times.register("Tensor", "Tensor")
def _times_one(factor: Tensor, grad: Tensor) -> Tensor:
    """``factor * grad`` (a new tensor)."""
    return grad * factor


_write = ops.MultitypeFuncGraph("zoo_write")


@_write.register("Tensor", "Tensor")
def _write_one(total: Tensor, value: Tensor) -> Tensor:
    """``total = value`` (``total`` a Parameter)."""
    return ops.assign(total, value)


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


class ScaledLoss(nn.Cell):
    """``(scale, *inputs) -> (scale * loss, loss, aux)`` over ``loss_net(*inputs) -> (loss, aux)``.

    Differentiated with ``has_aux``: the gradient is that of the scaled loss, so a
    low-precision backward pass computes scaled gradients (the point of loss scaling).
    """

    def __init__(self, loss_net: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.loss_net = loss_net

    def construct(self, scale: Tensor, *inputs: Any) -> tuple[Tensor, Tensor, Any]:
        loss, aux = self.loss_net(*inputs)
        return loss * scale, loss, aux


class ScaledAccumulate(nn.Cell):
    """One micro-batch under a loss scale: ``(weight, *inputs) -> (loss, aux)``.

    Adds the gradients of ``weight * loss`` to ``sums`` (``weight`` includes the loss
    scale); the loss is returned unscaled, like :class:`Accumulate`'s.
    """

    def __init__(self, loss_net: nn.Cell, optimizer: Optimizer, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.sums = sums
        self.scaled = ScaledLoss(loss_net)
        self.grad_fn = ms.value_and_grad(self.scaled, None, optimizer.params, has_aux=True)
        self.hyper_map = ops.HyperMap()

    def construct(self, weight: Tensor, *inputs: Any) -> tuple[Tensor, Any]:
        (_, loss, aux), grads = self.grad_fn(weight, *inputs)
        self.hyper_map(_add, self.sums, grads)
        return loss, aux


class Unscale(nn.Cell):
    """``(1 / scale) -> norm``: ``sums`` averaged over the ranks and unscaled, in place; their global norm.

    Under data parallelism the reduction happens here, once, so the norm (and with it the
    overflow verdict) is the same on every rank; :class:`UpdateSums` then does not reduce.
    """

    def __init__(self, optimizer: Optimizer, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.sums = sums
        self.reducer: Any = grad_reducer(optimizer.params)
        self.reduce = self.reducer is not None
        self.hyper_map = ops.HyperMap()

    def construct(self, inverse_scale: Tensor) -> Tensor:
        grads = self.hyper_map(_read, self.sums)
        if self.reduce:
            grads = self.reducer(grads)
        grads = self.hyper_map(ops.partial(_times, inverse_scale), grads)
        self.hyper_map(_write, self.sums, grads)
        return global_norm(grads)


class UpdateSums(nn.Cell):
    """``(norm) -> norm``: clip ``sums`` (reduced, unscaled, of norm ``norm``), update, ``sums = 0``."""

    def __init__(self, optimizer: Optimizer, max_grad_norm: float | None, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer.cell
        self.sums = sums
        self.clip = max_grad_norm is not None
        self.max_grad_norm = float(max_grad_norm or 0.0)
        self.hyper_map = ops.HyperMap()

    def construct(self, norm: Tensor) -> Tensor:
        grads = self.hyper_map(_read, self.sums)
        if self.clip:
            grads = clipped(grads, norm, self.max_grad_norm)
        self.optimizer(grads)
        self.hyper_map(_zero, self.sums)
        return norm


class ZeroSums(nn.Cell):
    """``() -> ()``: ``sums = 0`` (the end of an overflowed step: no update)."""

    def __init__(self, sums: ms.ParameterTuple) -> None:
        super().__init__(auto_prefix=False)
        self.sums = sums
        self.hyper_map = ops.HyperMap()

    def construct(self) -> Any:
        return self.hyper_map(_zero, self.sums)


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


class Stepper:
    """One optimizer step over ``loss_net(*inputs) -> (loss, aux)``, as ``backward`` calls then ``apply``.

    With one micro-batch per step (``accumulation_steps`` 1) ``backward`` only keeps the
    inputs and ``apply`` runs one :class:`TrainStep` graph (gradients, clipping and the
    update fused).  With more, each ``backward`` runs :class:`Accumulate` (its gradients,
    times its share, added to buffers) and ``apply`` runs :class:`ApplySums`: reduce over
    the ranks once, clip once, update once.  The sum of the shares' gradients is the whole
    batch's gradient, so the update is the whole batch's.  Compiled (``mindspore.jit``)
    when ``compile``, one graph per input shape.

    With ``loss_scaled`` (the spec has a loss scale: ``apply`` gets ``loss_scale``) every
    step accumulates, even with one micro-batch: each ``backward`` runs
    :class:`ScaledAccumulate` and ``apply`` :class:`Unscale`, then :class:`UpdateSums`
    or, on overflow, :class:`ZeroSums` (see the module docstring).
    """

    @classmethod
    def of(
        cls, loss_net: nn.Cell, optimizer: Optimizer, train: TrainSpec, options: Mapping[str, Any]
    ) -> Stepper:
        """The stepper ``train`` asks for (clipping, micro-batches, loss scale); compiled in graph mode."""
        return cls(
            loss_net,
            optimizer,
            train.max_grad_norm,
            train.accumulation_steps,
            options["mode"] == "graph",
            loss_scaled=train.loss_scale is not None,
        )

    def __init__(
        self,
        loss_net: nn.Cell,
        optimizer: Optimizer,
        max_grad_norm: float | None,
        accumulation_steps: int,
        compile: bool,
        loss_scaled: bool = False,
    ) -> None:
        self.whole: Callable[..., Any] | None = None
        self.pending: tuple[Any, ...] | None = None
        self.outs: list[tuple[float, Tensor, Any]] = []
        self.loss_scaled = loss_scaled
        if accumulation_steps == 1 and not loss_scaled:
            self.whole = _compiled(TrainStep(loss_net, optimizer, Update(optimizer, max_grad_norm)), compile)
            return
        sums = ms.ParameterTuple(optimizer.params).clone(prefix="grad_sum", init="zeros")
        if loss_scaled:
            self.accumulate = _compiled(ScaledAccumulate(loss_net, optimizer, sums), compile)
            self.unscale = _compiled(Unscale(optimizer, sums), compile)
            self.update_sums = _compiled(UpdateSums(optimizer, max_grad_norm, sums), compile)
            self.zero_sums = _compiled(ZeroSums(sums), compile)
            return
        self.accumulate = _compiled(Accumulate(loss_net, optimizer, sums), compile)
        self.apply_sums = _compiled(ApplySums(Update(optimizer, max_grad_norm), sums), compile)

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

    def apply_scaled(self, loss_scale: float) -> tuple[list[tuple[float, Tensor, Any]], Tensor, bool]:
        """The update of a loss-scaled step: each micro-batch's ``(share, loss, aux)``, the norm, skipped.

        The norm is of the unscaled gradients (inf when the step overflowed and was skipped);
        it is read back on the host to decide (one sync).
        """
        outs, self.outs = self.outs, []
        norm = self.unscale(Tensor(1.0 / loss_scale, ms.float32))
        if bool(np.isfinite(norm.asnumpy())):
            return outs, self.update_sums(norm), False
        self.zero_sums()
        return outs, Tensor(float("inf"), ms.float32), True


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
        sums.add({str(i): v for i, v in enumerate([loss, *(aux if names else ())])}, share)
    values = [ops.reshape(v, ()) for v in sums.take().values()]
    norm_value, loss_value, *named = mean_over_ranks(ops.stack([ops.reshape(norm, ()), *values])).asnumpy()
    return {
        "loss": float(loss_value),
        "grad_norm": float(norm_value),
        **{n: float(v) for n, v in zip(names, named, strict=True)},
    }


class ClassifierLoss(nn.Cell):
    """Mean cross-entropy (classification) or mean squared error on the one output (regression)."""

    def __init__(
        self, model: BertForSequenceClassification, regression: bool, compute: ms.Type | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.regression = regression
        #: the matmuls' dtype (None: float32), see :func:`zoo_mindspore.model.compute_dtype`
        self.compute = compute

    def construct(
        self, input_ids: Tensor, token_type_ids: Tensor, mask: Tensor, labels: Tensor, keep: Any
    ) -> tuple[Tensor, Tensor]:
        logits = self.model(input_ids, token_type_ids, mask, keep, False, False, None, None, self.compute)[0]
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

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """The update at ``lr``; returns ``loss``, ``grad_norm`` and ``loss_names`` (over every rank).

        With ``loss_scale`` (fp16, :mod:`zoo_core.precision`; the trainer was made for a
        spec with a loss scale) the gradients are unscaled before the norm and clipping,
        an overflowed step changes nothing, and the result has ``skipped``; the losses are
        returned scaled, as the core expects (it divides them).
        """
        if (loss_scale is not None) != self.stepper.loss_scaled:
            made = "with" if self.stepper.loss_scaled else "without"
            raise BackendError(
                f"mindspore trainer: apply got loss_scale={loss_scale!r}, but it was made {made} a loss scale"
            )
        self.optimizer.set_lr(lr)
        if loss_scale is None:
            return step_result(*self.stepper.apply(), self.loss_names)
        outs, norm, skipped = self.stepper.apply_scaled(loss_scale)
        return {**step_result(outs, norm, self.loss_names), "skipped": 1.0 if skipped else 0.0}

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
        self.loss_net = ClassifierLoss(model, self.regression, compute_dtype(spec.precision))
        self.stepper = Stepper.of(self.loss_net, self.optimizer, spec, options)
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
