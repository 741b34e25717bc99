"""The torch fine-tuning :class:`~zoo_core.backend.Trainer`: loss, backward; AdamW in :mod:`.optimizer`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo_core.backend import Batch, TrainSpec
from zoo_core.trainers import LossSums
from zoo_torch.model import (
    BertForSequenceClassification,
    ModelOutput,
    autocast,
    maybe_compile,
    training_inputs,
)
from zoo_torch.optimizer import apply_adamw, load_optimizer_state, make_adamw, save_optimizer_state
from zoo_torch.parallel import data_parallel, sync_if


class TorchTrainer:
    """Trains ``model`` in place with AdamW, one micro-batch's ``backward`` at a time, then ``apply``.

    Weight decay skips biases and LayerNorms (:func:`is_no_decay`).  Dropout uses the
    core's masks keyed by ``(spec.seed, batch.step, example)`` (:mod:`zoo_core.dropout`),
    so the trainer keeps no random state and a resumed run draws the same masks.
    Under data parallelism the model runs inside DDP (:mod:`zoo_torch.parallel`).
    """

    def __init__(
        self, model: BertForSequenceClassification, spec: TrainSpec, device: torch.device, compile: bool
    ) -> None:
        self.model = model
        self.spec = spec
        self.device = device
        named = list(model.named_parameters())
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec)
        self.parallel = data_parallel(model, device)
        self.forward: Callable[..., ModelOutput] = maybe_compile(self.parallel, compile)
        self.sums = LossSums()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Backpropagate ``weight`` x ``batch``'s loss; DDP averages the gradients when ``sync``."""
        self.model.train()
        with sync_if(self.parallel, sync):
            loss = self.loss(batch)
            (loss * weight).backward()
        self.sums.add({"loss": loss.detach()}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clip, AdamW at ``lr``; returns ``{"loss", "grad_norm"}`` averaged over the ranks."""
        return apply_adamw(
            self.optimizer, self.params, self.spec.max_grad_norm, lr, self.sums.take(), loss_scale
        )

    def loss(self, batch: Batch) -> Tensor:
        """The task loss of ``batch`` (mean cross-entropy, or squared error for regression)."""
        assert batch.labels is not None
        inputs = training_inputs(batch, self.device, self.model.config, self.spec.seed)
        with autocast(self.device, self.spec.precision):
            logits = self.forward(**inputs).logits.float()
        labels = torch.from_numpy(batch.labels).to(self.device)
        if self.spec.objective == "regression":
            return F.mse_loss(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels.long())

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pt`` (the optimizer's state_dict) into ``directory``."""
        save_optimizer_state(self.optimizer, Path(directory), self.device)

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        load_optimizer_state(self.optimizer, Path(directory), self.device)
