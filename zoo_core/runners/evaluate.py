"""Prediction and evaluation over a whole tokenised dataset (any backend)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from zoo_core.backend import Backend, Batch
from zoo_core.data.batching import collate, eval_batches
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.tasks import Task, compute_metrics

Predictor = Callable[[Batch], np.ndarray]


def predict_dataset(backend: Backend, model: Any, dataset: TokenizedDataset, batch_size: int) -> np.ndarray:
    """Logits of ``model`` on ``backend`` for every example, in dataset order."""
    return predict_with(lambda batch: backend.predict(model, batch), dataset, batch_size)


def predict_with(predict: Predictor, dataset: TokenizedDataset, batch_size: int) -> np.ndarray:
    """Logits of ``predict`` (any Batch -> logits function) for every example, in dataset order.

    Batches are sorted by length inside, to pad as little as possible.
    """
    out: np.ndarray | None = None
    for indices in eval_batches(dataset.lengths, batch_size):
        logits = predict(collate(dataset, indices))
        if out is None:
            out = np.zeros((len(dataset), logits.shape[1]), dtype=np.float32)
        out[indices] = logits
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


def evaluate_dataset(
    backend: Backend, model: Any, task: Task, dataset: TokenizedDataset, batch_size: int
) -> dict[str, float]:
    """The task's metrics on a labelled dataset."""
    if dataset.labels is None:
        raise ValueError("evaluation needs a labelled dataset")
    logits = predict_dataset(backend, model, dataset, batch_size)
    return compute_metrics(task, logits, dataset.labels)
