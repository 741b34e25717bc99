"""TinyBERT distillation in paddle: :class:`PaddleDistillTrainer`, the losses of ``DistillSpec``.

The losses are :class:`zoo_core.backend.DistillSpec`'s docstring in paddle, pinned by
``zoo_core.testing.distill_reference`` through the conformance suite.  A step runs one
teacher forward (eval mode, no gradient, no dropout) and one student forward, which
drops under the core's masks (:func:`zoo_core.dropout.dropout_masks`, stream 0).  The
model checks (layer map, head counts, outputs) run in zoo_core before the trainer is made
(:func:`zoo_core.trainers.make_distill_trainer`), so every backend refuses the same models
with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import Tensor, nn

from zoo_core.backend import Batch, DistillSpec
from zoo_core.dropout import dropout_masks
from zoo_core.errors import CheckpointError
from zoo_core.models.config import BertConfig
from zoo_core.models.student import distill_loss_weights, projection_init
from zoo_core.trainers import LossSums
from zoo_paddle.model import (
    BertForSequenceClassification,
    ModelOutput,
    autocast,
    batch_inputs,
    dropout_inputs,
    maybe_to_static,
    to_tensor,
)
from zoo_paddle.optimizer import (
    apply_adamw,
    canonical_parameters,
    load_optimizer_state,
    make_adamw,
    save_optimizer_state,
)
from zoo_paddle.parallel import data_parallel, sync_if

PROJECTION_FILE = "projection.pdparams"


def make_projection(student: BertConfig, teacher: BertConfig, seed: int) -> nn.Linear | None:
    """``P``: a Linear from the student's hidden size to the teacher's, or None when they are equal.

    Its weight is the core's :func:`~zoo_core.models.student.projection_init`, transposed
    to paddle's ``[hidden_S, hidden_T]`` layout (the same start on every backend, and
    paddle's random state left alone); its bias is zero.
    """
    weight = projection_init(student, teacher, seed)
    if weight is None:
        return None
    projection = nn.Linear(student.hidden_size, teacher.hidden_size)
    projection.weight.set_value(np.ascontiguousarray(weight.T))
    projection.bias.set_value(np.zeros(teacher.hidden_size, np.float32))
    return projection


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor, tokens: Tensor) -> Tensor:
    """``sum(m * (student - teacher)**2) / (n * hidden_T)`` over ``[B, T, hidden]`` states."""
    return ((student - teacher).square().sum(-1) * mask).sum() / (tokens * teacher.shape[-1])


def attention_mse(student: Tensor, teacher: Tensor, pairs: Tensor, pair_count: Tensor) -> Tensor:
    """``sum(m_q * m_k * (student - teacher)**2) / (heads * sum_b n_b**2)`` over ``[B, heads, T, T]``.

    ``pairs`` is ``m_q * m_k`` ``[B, T, T]`` and ``pair_count`` its sum.
    """
    return ((student - teacher).square().sum(1) * pairs).sum() / (teacher.shape[1] * pair_count)


def logits_loss(student: Tensor, teacher: Tensor, regression: bool, temperature: float) -> Tensor:
    """Soft cross-entropy at ``temperature`` (classification) or the mean squared error (regression)."""
    if regression:
        return (student - teacher).square().sum(-1).mean()
    target = F.softmax(teacher / temperature, axis=-1)
    return -(target * F.log_softmax(student / temperature, axis=-1)).sum(-1).mean()


class _Trained(nn.Layer):
    """The student and the projection as one layer, so their parameters have one set of names."""

    def __init__(self, student: nn.Layer, projection: nn.Linear | None) -> None:
        super().__init__()
        self.student = student
        if projection is not None:
            self.projection = projection


HiddenStates = tuple[Tensor, ...] | None
#: the stage's losses of (student output, its projected hidden states, teacher output, batch)
LossFunction = Callable[[ModelOutput, HiddenStates, ModelOutput, Batch], dict[str, Tensor]]


class StudentLoss(nn.Layer):
    """The student, the projection ``P`` on its hidden states and the stage's loss: one layer.

    What ``paddle.DataParallel`` wraps, so that it averages ``P``'s gradients with the
    student's.  ``forward`` returns the weighted loss to backpropagate and every loss
    of the stage, detached: paddle's reducer, looking for unused parameters, walks the
    backward graph from the forward's outputs and fails when a parameter it reaches
    gets no gradient (the classifier through the logits in the intermediate stage, the
    layers behind a loss weighted 0), so the weighted loss is the only output with a
    graph.  The student's forward may be a static program (``to_static``), which
    returns a plain tuple.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        projection: nn.Linear | None,
        losses: LossFunction,
        weights: Mapping[str, float],
        wants: Mapping[str, bool],
    ) -> None:
        super().__init__()
        self.student = student
        self.projection = projection
        self.losses, self.weights, self.wants = losses, dict(weights), dict(wants)

    def forward(
        self, inputs: Mapping[str, Tensor | None], teacher: ModelOutput, batch: Batch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss of ``batch`` (the model's ``inputs``) and every loss, detached.

        ``inputs`` may hold the student's ``dropout`` masks.
        """
        out = ModelOutput(*self.student(**inputs, **self.wants))
        hidden = out.hidden_states
        if hidden is not None and self.projection is not None:
            hidden = tuple(self.projection(h) for h in hidden)
        losses = self.losses(out, hidden, teacher, batch)
        total = paddle.add_n([w * losses[name] for name, w in self.weights.items() if w])
        return total, {name: value.detach() for name, value in losses.items()}


class PaddleDistillTrainer:
    """Distils ``teacher`` into ``student`` (trained in place) with AdamW, as ``spec`` says.

    Like :class:`zoo_paddle.train.PaddleTrainer`: AdamW without weight decay on biases
    and LayerNorms, global-norm clipping, dropout under the core's masks.  The
    projection ``P`` (only when the hidden sizes differ) is optimised with the student,
    its weight decayed, and saved by :meth:`save_state` as ``projection.pdparams``.
    Every loss of the stage is computed and returned, but only those with a non-zero
    weight are backpropagated; ``attention`` with different head counts (allowed only
    at weight 0) cannot be computed and is left out.  Under data parallelism the
    student and ``P`` run inside ``paddle.DataParallel`` as one :class:`StudentLoss`.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
        to_static: bool,
    ) -> None:
        self.student, self.teacher, self.spec = student, teacher, spec
        self.weights = distill_loss_weights(spec)
        self.intermediate = spec.stage == "intermediate"
        same_heads = student.config.num_attention_heads == teacher.config.num_attention_heads
        self.want_attention = self.intermediate and same_heads
        self.steps = 0
        self.projection = make_projection(student.config, teacher.config, spec.train.seed)
        self.trained = _Trained(student, self.projection)
        named = canonical_parameters(student)
        if self.projection is not None:
            named += canonical_parameters(self.projection, "projection.")
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec.train, student.config)
        if to_static:
            maybe_to_static(student, True)  # converts student.forward in place; StudentLoss calls it
        self.wants = {"output_hidden_states": self.intermediate, "output_attentions": self.want_attention}
        projection = self.projection if self.intermediate else None
        student_loss = StudentLoss(student, projection, self._losses, self.weights, self.wants)
        # the intermediate stage leaves the pooler and classifier (and the layers behind a loss
        # weighted 0) without gradients: DataParallel must look for them (they keep none, as
        # alone); the prediction stage's logits loss reaches every parameter of StudentLoss
        self.parallel = data_parallel(student_loss, find_unused_parameters=self.intermediate)
        self.student_loss: Callable[..., tuple[Tensor, dict[str, Tensor]]] = self.parallel or student_loss
        self.teacher_forward: Callable[..., ModelOutput] = maybe_to_static(teacher, to_static)
        self.sums = LossSums()

    def projection_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A float32 copy of ``P``'s weight in canonical layout ``[hidden_T, hidden_S]`` and bias, or None."""
        if self.projection is None:
            return None
        return self.projection.weight.numpy().T.copy(), self.projection.bias.numpy().copy()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Backpropagate ``weight`` x the weighted sum of ``batch``'s losses (labels unused).

        Keeps ``loss`` (the weighted sum) and every loss of the stage, unweighted, for
        :meth:`apply`; the gradients are all-reduced when ``sync``.
        """
        self.student.train()
        self.teacher.eval()
        inputs = batch_inputs(batch)
        with paddle.no_grad(), autocast(self.spec.train.precision):
            teacher_out = self.teacher_forward(**inputs, **self.wants)
        masks = dropout_masks(self.student.config, batch, self.spec.train.seed)
        student_inputs = {**inputs, "dropout": dropout_inputs(masks)}
        with sync_if(self.parallel, sync):
            with autocast(self.spec.train.precision):
                total, losses = self.student_loss(student_inputs, teacher_out, batch)
            (total * weight).backward()
        self.sums.add({name: value.detach() for name, value in {"loss": total, **losses}.items()}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clipping, AdamW at ``lr``; returns ``loss``, ``grad_norm`` and the stage's losses."""
        out = apply_adamw(
            self.optimizer, self.params, lr, self.sums.take(), self.spec.train.max_grad_norm, loss_scale
        )
        self.steps += 0 if out.get("skipped") else 1  # the optimizer's steps (an overflowed one is none)
        return out

    def _losses(
        self, student: ModelOutput, hidden: HiddenStates, teacher: ModelOutput, batch: Batch
    ) -> dict[str, Tensor]:
        """The stage's losses, unweighted, as scalar tensors (``hidden``: the student's, projected)."""
        if self.intermediate:
            return self._intermediate_losses(student, hidden, teacher, batch)
        regression = self.spec.train.objective == "regression"
        return {"logits": logits_loss(student.logits, teacher.logits, regression, self.spec.temperature)}

    def _intermediate_losses(
        self, student: ModelOutput, projected: HiddenStates, teacher: ModelOutput, batch: Batch
    ) -> dict[str, Tensor]:
        """``embedding``, ``hidden`` and (when computable) ``attention``, over real tokens only."""
        assert projected is not None and teacher.hidden_states is not None
        mask = to_tensor(batch.attention_mask, "float32")
        tokens = mask.sum()
        s_h, t_h = projected, teacher.hidden_states
        pairs = list(enumerate(self.spec.layer_map, 1))  # (student layer, teacher layer), 1-based
        hidden = [hidden_mse(s_h[i], t_h[j], mask, tokens) for i, j in pairs]
        losses = {
            "embedding": hidden_mse(s_h[0], t_h[0], mask, tokens),
            "hidden": paddle.add_n(hidden),
        }
        if self.want_attention:
            assert student.attentions is not None and teacher.attentions is not None
            keep = mask.unsqueeze(2) * mask.unsqueeze(1)  # m_q * m_k
            count = keep.sum()
            s_a, t_a = student.attentions, teacher.attentions
            attention = [attention_mse(s_a[i - 1], t_a[j - 1], keep, count) for i, j in pairs]
            losses["attention"] = paddle.add_n(attention)
        return losses

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pdopt``, ``trainer.json`` and, with a projection, ``projection.pdparams``."""
        directory = Path(directory)
        save_optimizer_state(self.optimizer, self.trained, self.steps, directory)
        if self.projection is not None:
            paddle.save(self.projection.state_dict(), str(directory / PROJECTION_FILE))

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        directory = Path(directory)
        if self.projection is not None:
            self._load_projection(directory / PROJECTION_FILE)
        self.steps = load_optimizer_state(self.optimizer, self.trained, directory)

    def _load_projection(self, path: Path) -> None:
        """Copy the projection saved at ``path`` into ``P`` (in place: the optimizer keeps it)."""
        assert self.projection is not None
        if not path.is_file():
            raise CheckpointError(f"{path}: no projection to resume from")
        try:
            state = paddle.load(str(path))
            for name, param in self.projection.named_parameters():
                if tuple(state[name].shape) != tuple(param.shape):
                    raise ValueError(
                        f"{name} has shape {tuple(state[name].shape)}, expected {tuple(param.shape)}"
                    )
                param.set_value(state[name])
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: cannot restore the projection ({exc})") from None
