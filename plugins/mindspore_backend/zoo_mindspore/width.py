"""DynaBERT in MindSpore: head/neuron importance and the multi-width trainer.

The core defines the arithmetic (:mod:`zoo_core.models.width`) and the losses
(:class:`zoo_core.backend.WidthSpec`); this module does the tensor work.  A width runs
the model on the first heads and FFN neurons of every layer (the ``width`` argument of
:class:`~zoo_mindspore.model.BertForSequenceClassification`): the layers slice their
weights, which computes exactly what the sliced sub-model computes, and the unused rows
and columns get exactly zero gradient.

One training step is one compiled graph (like :mod:`zoo_mindspore.train`'s): the teacher
once, without dropout and gradient, then the student at every width in turn, the
``k``-th width of ``spec.widths`` under the core's dropout masks of stream ``k``
(:mod:`zoo_core.dropout`; a narrower width uses the first heads of the attention
masks); the gradient of the summed weighted losses is the gradients accumulated over
the widths, followed by one clipped AdamW update.  With micro-batches
that graph computes each micro-batch's gradients, summed before the one update, and
under data parallelism they are averaged over the ranks once per step
(:class:`zoo_mindspore.train.Stepper`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from zoo_core.backend import Batch, WidthSpec, width_loss_name
from zoo_core.dropout import has_dropout
from zoo_core.errors import DataError
from zoo_core.models.width import width_dims
from zoo_mindspore.distill import hidden_mse, logits_loss
from zoo_mindspore.model import (
    BertForSequenceClassification,
    batch_tensors,
    compute_dtype,
    dropout_inputs,
    pad_to,
    padded_length,
)
from zoo_mindspore.optimizer import Optimizer
from zoo_mindspore.train import SteppedTrainer, Stepper


def task_loss(logits: Tensor, labels: Tensor, regression: bool) -> Tensor:
    """The mean cross-entropy (or squared error on the one output for a regression head)."""
    if regression:
        return ops.mean(ops.square(logits[:, 0] - labels))
    picked = ops.gather_elements(ops.log_softmax(logits, -1), 1, labels.reshape(-1, 1))
    return -ops.mean(picked)


def importance(model: BertForSequenceClassification, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Head ``[L, H]`` and neuron ``[L, I]`` importance of ``batch`` (see ``Backend.importance``).

    Runs eagerly (PyNative, no compile): one forward and backward in inference mode, with
    a gate of 1 on every head; the weights are not changed.
    """
    if batch.labels is None:
        raise DataError("importance needs a labelled batch")
    config = model.config
    regression = config.problem_type == "regression"
    model.set_train(False)
    inputs = batch_tensors(batch)
    labels = Tensor(np.asarray(batch.labels, np.float32 if regression else np.int32))
    layers = list(model.bert.encoder.layer)
    params = []
    for layer in layers:
        params += [layer.intermediate.dense.weight, layer.intermediate.dense.bias, layer.output.dense.weight]

    def loss(gates: Tensor) -> Tensor:
        logits = model(*inputs, None, False, False, None, gates)[0]
        return task_loss(logits, labels, regression)

    gates = Tensor(np.ones((config.num_hidden_layers, config.num_attention_heads), np.float32))
    _, (gate_grads, grads) = ms.value_and_grad(loss, grad_position=0, weights=params)(gates)
    heads = np.abs(gate_grads.asnumpy().astype(np.float64))
    neurons = []
    for i in range(len(layers)):
        w1, b1, w2 = (params[3 * i + k].asnumpy().astype(np.float64) for k in range(3))
        dw1, db1, dw2 = (grads[3 * i + k].asnumpy().astype(np.float64) for k in range(3))
        first = np.abs((w1 * dw1).sum(1) + b1 * db1)
        second = np.abs((w2 * dw2).sum(0))
        neurons.append(first + second)
    return heads, np.stack(neurons)


class WidthLoss(nn.Cell):
    """Every width's weighted loss, summed, and every width's unweighted losses.

    ``keep`` holds one tuple of scaled dropout masks per width (or is None: no dropout).
    ``construct`` returns ``(total, losses)``, ``losses`` being ``(logits, hidden)`` per
    width in the order of ``spec.widths`` (see :class:`zoo_core.backend.WidthSpec`).
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: WidthSpec,
    ) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.dims = [width_dims(student.config, w) for w in spec.widths]
        self.logits_weight = float(spec.loss_weights.get("logits", 0.0))
        self.hidden_weight = float(spec.loss_weights.get("hidden", 0.0))
        self.regression = spec.train.objective == "regression"
        self.temperature = float(spec.temperature)
        self.num_states = student.config.num_hidden_layers + 1
        #: both models' matmuls run in it (None: float32); the losses stay float32
        self.compute = compute_dtype(spec.train.precision)

    def construct(
        self, input_ids: Tensor, token_type_ids: Tensor, mask: Tensor, keep: Any
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        t_logits, t_h, _ = self.teacher(
            input_ids, token_type_ids, mask, None, True, False, None, None, self.compute
        )
        t_logits, t_h = ops.stop_gradient((t_logits, t_h))
        m = mask.astype(ms.float32)
        tokens = m.sum()
        total = 0.0
        losses = ()  # type: tuple[Tensor, ...]
        for k in range(len(self.dims)):
            width_keep = None if keep is None else keep[k]
            s_logits, s_h, _ = self.student(
                input_ids, token_type_ids, mask, width_keep, True, False, self.dims[k], None, self.compute
            )
            hidden = hidden_mse(s_h[0], t_h[0], m, tokens)
            for i in range(1, self.num_states):
                hidden = hidden + hidden_mse(s_h[i], t_h[i], m, tokens)
            logits = logits_loss(s_logits, t_logits, self.regression, self.temperature)
            if self.logits_weight:
                total = total + self.logits_weight * logits
            if self.hidden_weight:
                total = total + self.hidden_weight * hidden
            losses = losses + (logits, hidden)  # noqa: RUF005 (GRAPH mode)
        return total, losses


class MindSporeWidthTrainer(SteppedTrainer):
    """Trains ``student`` (in place) at every width of ``spec`` each step (DynaBERT), with AdamW.

    Like :class:`zoo_mindspore.train.MindSporeTrainer`: AdamW without weight decay on
    biases and LayerNorms, clipping, a compiled step.  The ``k``-th width of a step drops
    under the core's masks of stream ``k`` keyed by ``spec.train.seed``
    (:mod:`zoo_core.dropout`); the teacher never drops.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: WidthSpec,
        options: Mapping[str, Any],
    ) -> None:
        self.student, self.teacher, self.spec = student, teacher, spec
        self.optimizer = Optimizer(list(student.parameters_and_names()), spec.train, options["optimizer"])
        self.loss_net = WidthLoss(student, teacher, spec)
        self.stepper = Stepper.of(self.loss_net, self.optimizer, spec.train, options)
        self.trained, self.frozen = student, teacher
        self.loss_names = [width_loss_name(n, width) for width in spec.widths for n in ("logits", "hidden")]

    def inputs(self, batch: Batch) -> tuple[Any, ...]:
        """The loss net's inputs for ``batch``: padded tensors and each width's dropout masks."""
        limit = min(self.student.config.max_position_embeddings, self.teacher.config.max_position_embeddings)
        batch = pad_to(batch, padded_length(batch.input_ids.shape[1], limit))
        keep = None
        if has_dropout(self.student.config):
            seed = self.spec.train.seed
            keep = ms.mutable(
                tuple(
                    dropout_inputs(self.student.config, batch, seed, stream)
                    for stream in range(len(self.spec.widths))
                )
            )
        return (*batch_tensors(batch), keep)
