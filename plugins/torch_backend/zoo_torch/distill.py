"""TinyBERT distillation in torch: :class:`TorchDistillTrainer`, the losses of ``DistillSpec``.

The losses are :class:`zoo_core.backend.DistillSpec`'s docstring in torch, pinned by
``zoo_core.testing.distill_reference`` through the conformance suite.  A step runs one
teacher forward (eval mode, no gradient) and one student forward, and asks both for
hidden states and attention scores only in the intermediate stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo_core.backend import Batch, DistillSpec
from zoo_core.errors import CheckpointError
from zoo_core.files import one_line
from zoo_core.models.config import BertConfig
from zoo_core.models.student import distill_loss_weights, projection_init
from zoo_core.trainers import LossSums
from zoo_torch.model import (
    BertForSequenceClassification,
    ModelOutput,
    autocast,
    batch_inputs,
    maybe_compile,
    training_inputs,
)
from zoo_torch.optimizer import apply_adamw, load_optimizer_state, make_adamw, save_optimizer_state
from zoo_torch.parallel import data_parallel, sync_if

PROJECTION_FILE = "projection.pt"


def make_projection(
    student: BertConfig, teacher: BertConfig, seed: int, device: torch.device
) -> nn.Linear | None:
    """``P``: a Linear from the student's hidden size to the teacher's, or None when they are equal.

    Its weight is the core's :func:`~zoo_core.models.student.projection_init` (the same on
    every backend, and independent of torch's random state); its bias is zero.
    """
    weight = projection_init(student, teacher, seed)
    if weight is None:
        return None
    projection = nn.Linear(student.hidden_size, teacher.hidden_size)
    with torch.no_grad():
        projection.weight.copy_(torch.from_numpy(weight))
        projection.bias.zero_()
    return projection.to(device, torch.float32)


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor, tokens: Tensor) -> Tensor:
    """``sum(m * (student - teacher)**2) / (n * hidden_T)`` over ``[B, T, hidden]`` states (in float32)."""
    return ((student.float() - teacher.float()).square().sum(-1) * mask).sum() / (tokens * teacher.shape[-1])


def attention_mse(student: Tensor, teacher: Tensor, pairs: Tensor, pair_count: Tensor) -> Tensor:
    """``sum(m_q * m_k * (student - teacher)**2) / (heads * sum_b n_b**2)`` over ``[B, heads, T, T]``.

    ``pairs`` is ``m_q * m_k`` ``[B, T, T]`` and ``pair_count`` its sum.
    """
    return ((student.float() - teacher.float()).square().sum(1) * pairs).sum() / (
        teacher.shape[1] * pair_count
    )


def logits_loss(student: Tensor, teacher: Tensor, regression: bool, temperature: float) -> Tensor:
    """Soft cross-entropy at ``temperature`` (classification) or the mean squared error (regression)."""
    student, teacher = student.float(), teacher.float()
    if regression:
        return (student - teacher).square().sum(-1).mean()
    target = torch.softmax(teacher / temperature, dim=-1)
    return -(target * torch.log_softmax(student / temperature, dim=-1)).sum(-1).mean()


HiddenStates = tuple[Tensor, ...] | None


class ProjectedStudent(nn.Module):
    """The student followed by the projection ``P`` on its hidden states: one module, for DDP.

    ``forward`` returns the student's output and its hidden states through ``P`` (as
    they are without a projection, None when not asked for).
    """

    def __init__(self, student: BertForSequenceClassification, projection: nn.Linear | None) -> None:
        super().__init__()
        self.student = student
        self.projection = projection

    def forward(self, **inputs: Any) -> tuple[ModelOutput, HiddenStates]:
        """The student's output and its projected hidden states."""
        out = self.student(**inputs)
        hidden = out.hidden_states
        if hidden is not None and self.projection is not None:
            hidden = tuple(self.projection(h) for h in hidden)
        return out, hidden


class TorchDistillTrainer:
    """Distils ``teacher`` into ``student`` (trained in place) with AdamW, as ``spec`` says.

    Like :class:`zoo_torch.train.TorchTrainer`: fused AdamW without weight decay on
    biases and LayerNorms, clipping, the core's dropout masks (the teacher never drops).
    The projection ``P`` (only when the hidden sizes differ) is optimised with the
    student, its weight decayed, and saved by :meth:`save_state` as ``projection.pt``.
    Every loss of the stage is computed and returned, but only those with a non-zero
    weight are backpropagated; the one exception is ``attention`` at weight 0 with
    different head counts, which cannot be computed and is left out.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: DistillSpec,
        device: torch.device,
        compile: bool,
    ) -> None:
        self.student, self.teacher, self.spec, self.device = student, teacher, spec, device
        self.weights = distill_loss_weights(spec)
        self.intermediate = spec.stage == "intermediate"
        same_heads = student.config.num_attention_heads == teacher.config.num_attention_heads
        self.want_attention = self.intermediate and same_heads
        self.projection = make_projection(student.config, teacher.config, spec.train.seed, device)
        named = list(student.named_parameters())
        if self.projection is not None:
            named += [(f"projection.{n}", p) for n, p in self.projection.named_parameters()]
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec.train)
        projected = ProjectedStudent(student, self.projection if self.intermediate else None)
        # a loss weighted 0 leaves parameters without gradients: DDP must look for them
        self.parallel = data_parallel(projected, device, find_unused_parameters=True)
        self.student_forward: Callable[..., tuple[ModelOutput, HiddenStates]] = maybe_compile(
            self.parallel, compile
        )
        self.teacher_forward: Callable[..., ModelOutput] = maybe_compile(teacher, compile)
        self.sums = LossSums()

    def projection_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A float32 copy of ``P``'s weight ``[hidden_T, hidden_S]`` and bias, or None for the identity."""
        if self.projection is None:
            return None
        weight, bias = (
            p.detach().to("cpu", torch.float32, copy=True).numpy() for p in self.projection.parameters()
        )
        return weight, bias

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Backpropagate ``weight`` x the weighted sum of ``batch``'s losses (labels unused).

        Keeps ``loss`` (the weighted sum) and every loss of the stage, unweighted, for
        :meth:`apply`; DDP averages the gradients when ``sync``.
        """
        self.student.train()
        self.teacher.eval()
        wants = {"output_hidden_states": self.intermediate, "output_attentions": self.want_attention}
        low = autocast(self.device, self.spec.train.precision)
        with torch.no_grad(), low:
            teacher_out = self.teacher_forward(**batch_inputs(batch, self.device), **wants)
        inputs = training_inputs(batch, self.device, self.student.config, self.spec.train.seed)
        with sync_if(self.parallel, sync):
            with autocast(self.device, self.spec.train.precision):
                student_out, hidden = self.student_forward(**inputs, **wants)
            losses = self._losses(student_out, hidden, teacher_out, batch)  # float32 (see hidden_mse)
            total = torch.stack([w * losses[name] for name, w in self.weights.items() if w]).sum()
            (total * weight).backward()
        self.sums.add({name: value.detach() for name, value in {"loss": total, **losses}.items()}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clip, AdamW at ``lr``; returns ``loss``, ``grad_norm`` and the stage's losses."""
        return apply_adamw(
            self.optimizer, self.params, self.spec.train.max_grad_norm, lr, self.sums.take(), loss_scale
        )

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
        mask = torch.from_numpy(np.asarray(batch.attention_mask)).to(self.device, torch.float32)
        tokens = mask.sum()
        s_h, t_h = projected, teacher.hidden_states
        pairs = list(enumerate(self.spec.layer_map, 1))  # (student layer, teacher layer), 1-based
        hidden = [hidden_mse(s_h[i], t_h[j], mask, tokens) for i, j in pairs]
        losses = {
            "embedding": hidden_mse(s_h[0], t_h[0], mask, tokens),
            "hidden": torch.stack(hidden).sum(),
        }
        if self.want_attention:
            assert student.attentions is not None and teacher.attentions is not None
            keep = mask[:, :, None] * mask[:, None, :]  # m_q * m_k
            count = keep.sum()
            s_a, t_a = student.attentions, teacher.attentions
            attention = [attention_mse(s_a[i - 1], t_a[j - 1], keep, count) for i, j in pairs]
            losses["attention"] = torch.stack(attention).sum()
        return losses

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pt`` and, with a projection, ``projection.pt`` into ``directory``."""
        directory = Path(directory)
        save_optimizer_state(self.optimizer, directory, self.device)
        if self.projection is not None:
            torch.save(self.projection.state_dict(), directory / PROJECTION_FILE)

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        directory = Path(directory)
        if self.projection is not None:
            self._load_projection(directory / PROJECTION_FILE)
        load_optimizer_state(self.optimizer, directory, self.device)

    def _load_projection(self, path: Path) -> None:
        """Copy the projection saved at ``path`` into ``P`` (in place: the optimizer keeps it)."""
        assert self.projection is not None
        try:
            self.projection.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no projection to resume from") from None
        except Exception as exc:  # torch.load raises almost anything on a damaged file
            reason = one_line(f"{type(exc).__name__}: {exc}")
            raise CheckpointError(f"{path}: cannot restore the projection ({reason})") from None
