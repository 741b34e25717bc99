"""Prediction and evaluation over a whole tokenised dataset (any backend)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
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


#: the per-class results of a classification run's best/ on its first dev split, read by ``zoo report``
PER_CLASS_FILE = "per_class.json"


def write_per_class(
    run_dir: Path,
    backend: Backend,
    model: Any,
    task: Task,
    evals: dict[str, TokenizedDataset],
    batch_size: int,
) -> dict[str, Any] | None:
    """Evaluate ``run_dir/best`` per class (precision, recall, F1, support, confusion) into per_class.json.

    Only classification runs with a dev split, only on the writer rank; ``model`` (any
    model of best/'s shape) gets best/'s weights.  Returns the record, or None.
    """
    from zoo_core.checkpoint import open_model_dir
    from zoo_core.tasks.metrics import confusion, per_class_report

    if task.is_regression or not evals or backend.rank != 0:
        return None
    split, dataset = next(iter(evals.items()))
    assert dataset.labels is not None
    backend.load_weights(model, open_model_dir(run_dir / "best").load_weights())
    logits = predict_dataset(backend, model, dataset, batch_size)
    record = {
        "split": split,
        "checkpoint": "best",
        "labels": list(task.labels),
        "per_class": per_class_report(task.labels, logits, dataset.labels),
        "confusion": confusion(task.num_labels, logits, dataset.labels).tolist(),
    }
    tmp = run_dir / f".{PER_CLASS_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(run_dir / PER_CLASS_FILE)
    return record
