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
    dropout_inputs,
    pad_to,
    padded_length,
)
from zoo_mindspore.optimizer import Optimizer, Update, load_trainer_state, save_trainer_state
from zoo_mindspore.parallel import mean_over_ranks

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

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """The update at ``lr``; returns ``loss``, ``grad_norm`` and ``loss_names`` (over every rank).

        fp16 loss scaling is not implemented here yet: the spec declares fp32 only, so the
        core never passes ``loss_scale``.
        """
        if loss_scale is not None:
            raise BackendError("the mindspore backend trains in fp32 only (no loss scaling yet)")
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
