"""The paddle fine-tuning :class:`~zoo_core.backend.Trainer`: loss, backward; AdamW in :mod:`.optimizer`.

Randomness: none of paddle's.  Dropout multiplies by the core's keep-masks
(:func:`zoo_core.dropout.dropout_masks`, keyed by the spec's seed, the batch's step and
each example's index), drawn for each micro-batch and given to the model's forward as
inputs (:func:`zoo_paddle.model.dropout_inputs`), so a static forward takes new masks
every call.  A run is then reproducible from its seed and step count alone, resuming
needs no generator state, and any process count draws the same masks.

Under data parallelism the trained model runs inside ``paddle.DataParallel``
(:mod:`zoo_paddle.parallel`); ``to_static`` then converts the model's own forward in
place, which the wrapper calls, so the two coexist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paddle.nn.functional as F
from paddle import Tensor

from zoo_core.backend import Batch, TrainSpec
from zoo_core.dropout import dropout_masks
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


class PaddleTrainer:
    """Trains ``model`` in place with AdamW, one micro-batch's ``backward`` at a time, then ``apply``.

    Weight decay skips biases and LayerNorms (:func:`is_no_decay` of the canonical
    name); ``to_static`` runs the forward through ``paddle.jit.to_static``.
    """

    def __init__(self, model: BertForSequenceClassification, spec: TrainSpec, to_static: bool) -> None:
        self.model = model
        self.spec = spec
        self.steps = 0
        named = canonical_parameters(model)
        self.params = [p for _, p in named]
        self.optimizer = make_adamw(named, spec, model.config)
        self.parallel = data_parallel(model)
        self.forward: Callable[..., ModelOutput] = maybe_to_static(model, to_static, self.parallel)
        self.sums = LossSums()

    def backward(self, batch: Batch, weight: float, sync: bool) -> None:
        """Backpropagate ``weight`` x ``batch``'s loss (under its dropout masks); all-reduce when ``sync``."""
        self.model.train()
        with sync_if(self.parallel, sync):
            loss = self.loss(batch)
            (loss * weight).backward()
        self.sums.add({"loss": loss.detach()}, weight)

    def apply(self, lr: float, loss_scale: float | None = None) -> dict[str, float]:
        """Norm, clipping, AdamW at ``lr``; returns ``loss`` and ``grad_norm`` over all ranks."""
        out = apply_adamw(
            self.optimizer, self.params, lr, self.sums.take(), self.spec.max_grad_norm, loss_scale
        )
        self.steps += 0 if out.get("skipped") else 1  # the optimizer's steps (an overflowed one is none)
        return out

    def loss(self, batch: Batch) -> Tensor:
        """The task loss of ``batch`` (mean cross-entropy, or squared error for regression).

        The model drops under the core's masks for ``batch`` (seed ``spec.seed``, stream 0).
        """
        assert batch.labels is not None
        dropout = dropout_inputs(dropout_masks(self.model.config, batch, self.spec.seed))
        with autocast(self.spec.precision):
            logits = self.forward(**batch_inputs(batch), dropout=dropout).logits.astype("float32")
        if self.spec.objective == "regression":
            return F.mse_loss(logits[:, 0], to_tensor(batch.labels, "float32"))
        return F.cross_entropy(logits, to_tensor(batch.labels, "int64"))

    def save_state(self, directory: Path) -> None:
        """Write ``optimizer.pdopt`` and ``trainer.json`` (the step count) into ``directory``."""
        save_optimizer_state(self.optimizer, self.model, self.steps, Path(directory))

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote; raises :class:`CheckpointError` if unreadable."""
        self.steps = load_optimizer_state(self.optimizer, self.model, Path(directory))
