"""DynaBERT in torch: running at a width, head/neuron importance, the multi-width trainer.

The core defines the arithmetic (``zoo_core.models.width``) and the losses
(:class:`zoo_core.backend.WidthSpec`); this module does the tensor work.  A width is
applied by restricting every layer to its first heads and neurons
(:func:`set_width`), which computes exactly what the sliced sub-model computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from zoo_core.backend import Batch, WidthSpec, width_loss_name
from zoo_core.errors import DataError
from zoo_core.models.width import width_dims
from zoo_core.trainers import LossSums
from zoo_torch.distill import hidden_mse, logits_loss
from zoo_torch.model import (
    BertForSequenceClassification,
    ModelOutput,
    autocast,
    batch_inputs,
    training_inputs,
)
from zoo_torch.optimizer import apply_adamw, load_optimizer_state, make_adamw, save_optimizer_state
from zoo_torch.parallel import data_parallel, sync_if


def set_width(model: BertForSequenceClassification, width_mult: float | None) -> None:
    """Make every layer of ``model`` run on its first heads and neurons at ``width_mult``.

    None (or 1.0) restores the full model.
    """
    heads, neurons = (None, None) if width_mult is None else width_dims(model.config, width_mult)
    for layer in model.bert.encoder.layers():
        layer.attention.self.active_heads = heads
        layer.intermediate.active_neurons = neurons


@contextmanager
def at_width(model: BertForSequenceClassification, width_mult: float) -> Iterator[None]:
    """Run ``model`` at ``width_mult`` inside the block, at full width after it."""
    set_width(model, width_mult)
    try:
        yield
    finally:
        set_width(model, None)


def task_loss(logits: Tensor, labels: np.ndarray, regression: bool) -> Tensor:
    """The mean cross-entropy (or squared error for a regression head) of ``logits`` against ``labels``."""
    target = torch.from_numpy(labels).to(logits.device)
    if regression:
        return F.mse_loss(logits[:, 0], target.float())
    return F.cross_entropy(logits, target.long())


def importance(
    model: BertForSequenceClassification, batch: Batch, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Head ``[L, H]`` and neuron ``[L, I]`` importance of ``batch`` (see ``Backend.importance``)."""
    if batch.labels is None:
        raise DataError("importance needs a labelled batch")
    config = model.config
    layers = model.bert.encoder.layers()
    gates = torch.ones(config.num_hidden_layers, config.num_attention_heads, device=device)
    gates.requires_grad_(True)
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for i, layer in enumerate(layers):
            layer.attention.self.head_gates = gates[i]
        logits = model(**batch_inputs(batch, device)).logits
        task_loss(logits, batch.labels, config.problem_type == "regression").backward()
    finally:
        for layer in layers:
            layer.attention.self.head_gates = None
    assert gates.grad is not None
    heads = gates.grad.abs().double().cpu().numpy()
    neurons = []
    with torch.no_grad():
        for layer in layers:
            w1, b1, w2 = (
                layer.intermediate.dense.weight,
                layer.intermediate.dense.bias,
                layer.output.dense.weight,
            )
            assert w1.grad is not None and b1.grad is not None and w2.grad is not None
            first = ((w1 * w1.grad).sum(1) + b1 * b1.grad).abs()
            second = (w2 * w2.grad).sum(0).abs()
            neurons.append((first.double() + second.double()).cpu().numpy())
    model.zero_grad(set_to_none=True)
    return heads, np.stack(neurons)


class TorchWidthTrainer:
    """Trains ``student`` at every width of ``spec`` each step (DynaBERT), with AdamW.

    Like :class:`zoo_torch.train.TorchTrainer`: fused AdamW without weight decay on
    biases and LayerNorms, clipping.  The ``k``-th width of a step drops under the core's
    masks of stream ``k`` (:mod:`zoo_core.dropout`).  The teacher runs once per step;
    each width's loss is backpropagated at once, so only one width's activations are
    alive at a time.
    """

    def __init__(
        self,
        student: BertForSequenceClassification,
        teacher: BertForSequenceClassification,
        spec: WidthSpec,
        device: torch.device,
    ) -> None:
        self.student, self.teacher, self.spec, self.device = student, teacher, spec, device
        self.regression = spec.train.objective == "regression"
        self.weights = {name: float(spec.loss_weights.get(name, 0.0)) for name in ("logits", "hidden")}
        named = list(student.named_parameters())
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec.train)
        self.parallel = data_parallel(student, device)
        self.sums = LossSums()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Every width's forward and backward on ``batch``, each times ``weight``; see :class:`WidthSpec`.

        The teacher runs once; DDP averages the gradients after the last width when ``sync``.
        """
        self.student.train()
        self.teacher.eval()
        want_hidden = bool(self.weights["hidden"])
        precision = self.spec.train.precision
        with torch.no_grad(), autocast(self.device, precision):
            teacher_out = self.teacher(**batch_inputs(batch, self.device), output_hidden_states=True)
        mask = torch.from_numpy(np.asarray(batch.attention_mask)).to(self.device, torch.float32)
        tokens = mask.sum()
        for stream, width in enumerate(self.spec.widths):
            last = sync and stream == len(self.spec.widths) - 1
            inputs = training_inputs(batch, self.device, self.student.config, self.spec.train.seed, stream)
            with at_width(self.student, width), sync_if(self.parallel, last):
                with autocast(self.device, precision):
                    student_out = self.parallel(**inputs, output_hidden_states=True)
                losses = self._losses(student_out, teacher_out, mask, tokens)
                weighted = self.weights["logits"] * losses["logits"]
                if want_hidden:
                    weighted = weighted + self.weights["hidden"] * losses["hidden"]
                (weighted * weight).backward()
            named = {width_loss_name(name, width): value.detach() for name, value in losses.items()}
            self.sums.add({"loss": weighted.detach(), **named}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clip, AdamW at ``lr``; returns ``loss`` (all widths), ``grad_norm``, each width's losses."""
        return apply_adamw(
            self.optimizer, self.params, self.spec.train.max_grad_norm, lr, self.sums.take(), loss_scale
        )

    def _losses(
        self, student: ModelOutput, teacher: ModelOutput, mask: Tensor, tokens: Tensor
    ) -> dict[str, Tensor]:
        """``logits`` and ``hidden`` of one width, unweighted."""
        assert student.hidden_states is not None and teacher.hidden_states is not None
        hidden = torch.stack(
            [
                hidden_mse(s, t, mask, tokens)
                for s, t in zip(student.hidden_states, teacher.hidden_states, strict=True)
            ]
        ).sum()
        logits = logits_loss(student.logits, teacher.logits, self.regression, self.spec.temperature)
        return {"logits": logits, "hidden": hidden}

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pt`` into ``directory``."""
        save_optimizer_state(self.optimizer, Path(directory), self.device)

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises ``CheckpointError`` if unreadable."""
        load_optimizer_state(self.optimizer, Path(directory), self.device)
