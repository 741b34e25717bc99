"""TinyBERT distillation in MindSpore: :class:`MindSporeDistillTrainer`, the losses of ``DistillSpec``.

The losses are :class:`zoo_core.backend.DistillSpec`'s docstring written in MindSpore
ops, pinned by ``zoo_core.testing.distill_reference`` through the conformance suite.
One step (compiled like :mod:`zoo_mindspore.train`'s) runs the teacher without dropout
and without gradient, the student with dropout (the core's masks of stream 0, see
:mod:`zoo_core.dropout`), and asks both for hidden states and attention scores only in
the intermediate stage.  Micro-batches and data parallelism
are :class:`zoo_mindspore.train.Stepper`'s: the student and the projection ``P`` are the
optimizer's parameters, so the gradients of both are accumulated and averaged over ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from zoo_core.backend import Batch, DistillSpec
from zoo_core.errors import CheckpointError
from zoo_core.models.config import BertConfig
from zoo_core.models.student import distill_loss_weights, projection_init
from zoo_mindspore.model import (
    BertForSequenceClassification,
    batch_tensors,
    compute_dtype,
    dropout_inputs,
    pad_to,
    padded_length,
)
from zoo_mindspore.optimizer import Optimizer, load_trainer_state, save_trainer_state, write_parameter
from zoo_mindspore.train import SteppedTrainer, Stepper

PROJECTION_FILE = "projection.npz"


def make_projection(student: BertConfig, teacher: BertConfig, seed: int) -> nn.Dense | None:
    """``P``: a Dense from the student's hidden size to the teacher's, or None when they are equal.

    Its weight (``[hidden_T, hidden_S]``, MindSpore's layout too) is the core's
    :func:`~zoo_core.models.student.projection_init`, the same start on every backend;
    its bias is zero.
    """
    weight = projection_init(student, teacher, seed)
    if weight is None:
        return None
    projection = nn.Dense(student.hidden_size, teacher.hidden_size)
    projection.weight.set_data(Tensor(weight))
    projection.bias.set_data(Tensor(np.zeros(teacher.hidden_size, np.float32)))
    return projection


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor, tokens: Tensor) -> Tensor:
    """``sum(m * (student - teacher)**2) / (n * hidden_T)`` over ``[B, T, hidden]`` states."""
    return (ops.square(student - teacher).sum(-1) * mask).sum() / (tokens * teacher.shape[-1])


def attention_mse(student: Tensor, teacher: Tensor, pairs: Tensor, pair_count: Tensor) -> Tensor:
    """``sum(m_q * m_k * (student - teacher)**2) / (heads * sum_b n_b**2)`` over ``[B, heads, T, T]``.

    ``pairs`` is ``m_q * m_k`` ``[B, T, T]`` and ``pair_count`` its sum.
    """
    return (ops.square(student - teacher).sum(1) * pairs).sum() / (teacher.shape[1] * pair_count)


def logits_loss(student: Tensor, teacher: Tensor, regression: bool, temperature: float) -> Tensor:
    """Soft cross-entropy at ``temperature`` (classification) or the mean squared error (regression)."""
    if regression:
        return ops.square(student - teacher).sum(-1).mean()
    target = ops.softmax(teacher / temperature, -1)
    return -(target * ops.log_softmax(student / temperature, -1)).sum(-1).mean()


class DistillLoss(nn.Cell):
    """The stage's weighted loss and every unweighted loss: ``construct`` returns ``(total, losses)``.

    ``names`` lists the losses computed, in the order of ``losses``.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        projection: nn.Dense | None,
        spec: DistillSpec,
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.projection = student, teacher, projection
        self.intermediate = spec.stage == "intermediate"
        same_heads = student.config.num_attention_heads == teacher.config.num_attention_heads
        self.want_attention = self.intermediate and same_heads
        self.names = [n for n in spec.losses if n != "attention" or self.want_attention]
        weights = distill_loss_weights(spec)
        self.weights = [weights[n] for n in self.names]
        self.pairs = list(enumerate(spec.layer_map, 1))  # (student layer, teacher layer), 1-based
        self.regression = spec.train.objective == "regression"
        self.temperature = float(spec.temperature)
        #: both models' matmuls run in it (None: float32); the losses and ``P`` stay float32
        self.compute = compute_dtype(spec.train.precision)

    def _project(self, x: Tensor) -> Tensor:
        return x if self.projection is None else self.projection(x)

    def construct(
        self, input_ids: Tensor, token_type_ids: Tensor, mask: Tensor, keep: Any
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        want_hidden, want_attention = self.intermediate, self.want_attention
        compute = self.compute
        t_logits, t_h, t_a = self.teacher(
            input_ids, token_type_ids, mask, None, want_hidden, want_attention, None, None, compute
        )
        t_logits, t_h, t_a = ops.stop_gradient((t_logits, t_h, t_a))
        s_logits, s_h, s_a = self.student(
            input_ids, token_type_ids, mask, keep, want_hidden, want_attention, None, None, compute
        )
        if self.intermediate:
            m = mask.astype(ms.float32)
            tokens = m.sum()
            hidden = [hidden_mse(self._project(s_h[i]), t_h[j], m, tokens) for i, j in self.pairs]
            embedding = hidden_mse(self._project(s_h[0]), t_h[0], m, tokens)
            losses = (embedding, ops.stack(hidden).sum())  # type: tuple[Tensor, ...]
            if self.want_attention:
                keep = m[:, :, None] * m[:, None, :]  # m_q * m_k
                count = keep.sum()
                attention = [attention_mse(s_a[i - 1], t_a[j - 1], keep, count) for i, j in self.pairs]
                losses = losses + (ops.stack(attention).sum(),)  # noqa: RUF005 (GRAPH mode)
        else:
            losses = (logits_loss(s_logits, t_logits, self.regression, self.temperature),)
        total = 0.0
        for k in range(len(self.weights)):  # zip(strict=...) and star unpacking do not compile
            if self.weights[k]:
                total = total + self.weights[k] * losses[k]
        return total, losses


class MindSporeDistillTrainer(SteppedTrainer):
    """Distils ``teacher`` into ``student`` (trained in place) with AdamW, as ``spec`` says.

    Like :class:`zoo_mindspore.train.MindSporeTrainer`: AdamW without weight decay on
    biases and LayerNorms, clipping, a compiled step, the core's dropout masks keyed by
    ``spec.train.seed`` (the teacher never drops).  The projection ``P`` (only when the
    hidden sizes differ) is optimised with the student, its weight decayed, and saved by
    :meth:`save_state` as ``projection.npz``.  Every loss of the stage is computed and
    returned, but only those with a non-zero weight are backpropagated; ``attention``
    with different head counts (weight 0) cannot be computed and is left out.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
        options: Mapping[str, Any],
    ) -> None:
        self.student, self.teacher, self.spec = student, teacher, spec
        self.projection = make_projection(student.config, teacher.config, spec.train.seed)
        named = list(student.parameters_and_names())
        if self.projection is not None:
            named += [(f"projection.{n}", p) for n, p in self.projection.parameters_and_names()]
        self.optimizer = Optimizer(named, spec.train, options["optimizer"])
        self.loss_net = DistillLoss(student, teacher, self.projection, spec)
        self.stepper = Stepper.of(self.loss_net, self.optimizer, spec.train, options)
        self.trained, self.frozen, self.loss_names = student, teacher, self.loss_net.names

    def projection_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A float32 copy of ``P``'s weight ``[hidden_T, hidden_S]`` and bias, or None for the identity."""
        if self.projection is None:
            return None
        return self.projection.weight.asnumpy().copy(), self.projection.bias.asnumpy().copy()

    def inputs(self, batch: Batch) -> tuple[Any, ...]:
        """The loss net's inputs for ``batch``: padded tensors and the student's dropout masks."""
        limit = min(self.student.config.max_position_embeddings, self.teacher.config.max_position_embeddings)
        batch = pad_to(batch, padded_length(batch.input_ids.shape[1], limit))
        keep = dropout_inputs(self.student.config, batch, self.spec.train.seed)
        return (*batch_tensors(batch), keep)

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.npz`` and, with a projection, ``projection.npz``."""
        directory = Path(directory)
        save_trainer_state(self.optimizer, directory)
        weights = self.projection_weights()
        if weights is not None:
            with open(directory / PROJECTION_FILE, "wb") as f:
                np.savez(f, weight=weights[0], bias=weights[1])

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        directory = Path(directory)
        if self.projection is not None:
            self._load_projection(directory / PROJECTION_FILE)
        load_trainer_state(self.optimizer, directory)

    def _load_projection(self, path: Path) -> None:
        """Copy the projection saved at ``path`` into ``P`` (in place: the optimizer keeps it)."""
        assert self.projection is not None
        try:
            with np.load(path) as data:
                weight, bias = data["weight"], data["bias"]
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no projection to resume from") from None
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: cannot restore the projection ({exc})") from None
        if weight.shape != tuple(self.projection.weight.shape) or bias.shape != tuple(
            self.projection.bias.shape
        ):
            raise CheckpointError(f"{path}: the projection has shape {weight.shape}, expected another")
        write_parameter(self.projection.weight, Tensor(weight))
        write_parameter(self.projection.bias, Tensor(bias))
