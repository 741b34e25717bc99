"""Task metrics: GLUE's in plain numpy (accuracy, F1, Matthews correlation, Pearson, Spearman),
macro / weighted F1 and the per-class report and confusion matrix through scikit-learn.

Each metric takes two equally long 1-D arrays and returns a Python float.  Where a
metric is undefined (no positive predictions, constant input) it returns 0.0 rather
than NaN, so results stay comparable and JSON-serialisable; this matches sklearn for
F1 and MCC (scipy would return NaN for a constant-input correlation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from zoo_core.tasks.glue import Task

Metric = Callable[[np.ndarray, np.ndarray], float]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays flattened; raises ValueError unless they are equally long and non-empty."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"metric inputs differ in length: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ValueError("metrics need at least one example")
    return a, b


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to their label."""
    preds, labels = _pair(preds, labels)
    return float(np.mean(preds == labels))


def f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class 1: ``2·TP / (2·TP + FP + FN)``; 0.0 when TP is 0."""
    preds, labels = _pair(preds, labels)
    pred_pos, true_pos = preds == 1, labels == 1
    tp = int(np.sum(pred_pos & true_pos))
    if tp == 0:
        return 0.0
    fp = int(np.sum(pred_pos & ~true_pos))
    fn = int(np.sum(~pred_pos & true_pos))
    return 2.0 * tp / (2.0 * tp + fp + fn)


def matthews_corrcoef(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (multiclass form, as sklearn); 0.0 when the denominator is 0."""
    preds, labels = _pair(preds, labels)
    classes, codes = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k, n = len(classes), labels.size
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[:n], codes[n:]), 1.0)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    correct = float(np.trace(confusion))
    cov_tp = correct * n - float(t_sum @ p_sum)
    cov_pp = float(n) * n - float(p_sum @ p_sum)
    cov_tt = float(n) * n - float(t_sum @ t_sum)
    if cov_pp * cov_tt == 0.0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient; 0.0 when either input is constant."""
    x, y = _pair(x, y)
    dx = x.astype(np.float64) - np.mean(x, dtype=np.float64)
    dy = y.astype(np.float64) - np.mean(y, dtype=np.float64)
    denom = float(np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    if denom == 0.0:
        return 0.0
    return float(np.clip(np.sum(dx * dy) / denom, -1.0, 1.0))


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``method="average"``)."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="mergesort")
    inverse = np.empty(values.size, dtype=np.intp)
    inverse[order] = np.arange(values.size)
    ordered = values[order]
    first_of_run = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = np.cumsum(first_of_run)[inverse]  # 1-based index of each value's run
    run_starts = np.r_[np.nonzero(first_of_run)[0], values.size]
    # a run covering sorted positions [s, e) has 1-based ranks s+1 .. e, averaging (s + 1 + e) / 2
    return 0.5 * (run_starts[dense] + run_starts[dense - 1] + 1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties as in scipy)."""
    x, y = _pair(x, y)
    return pearson(rankdata(x), rankdata(y))


def macro_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over the classes seen in labels or predictions (sklearn)."""
    from sklearn.metrics import f1_score

    preds, labels = _pair(preds, labels)
    return float(f1_score(labels, preds, average="macro", zero_division=0))


def weighted_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Per-class F1 averaged with each class's support as weight (sklearn)."""
    from sklearn.metrics import f1_score

    preds, labels = _pair(preds, labels)
    return float(f1_score(labels, preds, average="weighted", zero_division=0))


#: every metric a task may name, by the key it reports under
METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "weighted_f1": weighted_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}

#: the metrics that make sense for each task type (``f1`` needs exactly two labels)
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "weighted_f1", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")


def per_class_report(labels: tuple[str, ...], logits: np.ndarray, gold: np.ndarray) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class, in label order (sklearn)."""
    from sklearn.metrics import precision_recall_fscore_support

    preds = np.argmax(np.asarray(logits), axis=1)
    index = list(range(len(labels)))
    precision, recall, f1_, support = precision_recall_fscore_support(
        gold, preds, labels=index, zero_division=0
    )
    return [
        {
            "label": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1_[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    ]


def confusion(num_labels: int, logits: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``[true, predicted]`` counts over the task's labels (sklearn's confusion_matrix)."""
    from sklearn.metrics import confusion_matrix

    preds = np.argmax(np.asarray(logits), axis=1)
    return np.asarray(confusion_matrix(gold, preds, labels=list(range(num_labels))))


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric of ``task`` for model outputs ``logits`` ``[N, num_labels]`` against ``labels``.

    Classification predictions are the argmax over labels; a regression task's
    prediction is ``logits[:, 0]``.  Keys are the task's metric names, in its order.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != task.num_labels:
        raise ValueError(
            f"task {task.name} expects logits of shape [N, {task.num_labels}], got {list(logits.shape)}"
        )
    preds = logits[:, 0] if task.is_regression else np.argmax(logits, axis=1)
    labels = np.asarray(labels)
    return {name: METRICS[name](preds, labels) for name in task.metrics}
