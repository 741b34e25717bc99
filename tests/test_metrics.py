"""GLUE metrics against values worked out by hand (and sklearn/scipy when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo_core.tasks import compute_metrics, get_task
from zoo_core.tasks.metrics import accuracy, f1, matthews_corrcoef, pearson, rankdata, spearman

# A binary example shared by F1 and MCC:
#   index   0 1 2 3 4 5
#   preds   1 1 0 1 0 0
#   labels  1 0 0 1 1 0
# TP = {0, 3} = 2, FP = {1} = 1, FN = {4} = 1, TN = {2, 5} = 2
PREDS = np.array([1, 1, 0, 1, 0, 0])
LABELS = np.array([1, 0, 0, 1, 1, 0])


def test_accuracy() -> None:
    # 2 of 4 equal
    assert accuracy(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])) == 0.5
    assert accuracy(PREDS, LABELS) == pytest.approx(4 / 6)
    assert isinstance(accuracy(PREDS, LABELS), float)


def test_f1_by_hand() -> None:
    # precision = 2/3, recall = 2/3 → F1 = 2·TP / (2·TP + FP + FN) = 4 / 6
    assert f1(PREDS, LABELS) == pytest.approx(2 / 3)
    # precision 1/1, recall 1/3 → F1 = 2 / (2 + 0 + 2) = 0.5
    assert f1(np.array([1, 0, 0]), np.array([1, 1, 1])) == pytest.approx(0.5)
    assert f1(LABELS, LABELS) == 1.0


def test_f1_degenerate_cases_are_zero() -> None:
    assert f1(np.zeros(4, int), np.array([0, 1, 0, 1])) == 0.0  # no positive predictions
    assert f1(np.zeros(4, int), np.zeros(4, int)) == 0.0  # no positives at all: undefined → 0
    assert f1(np.ones(3, int), np.zeros(3, int)) == 0.0  # only false positives


def test_mcc_binary_by_hand() -> None:
    # (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 − 1) / sqrt(3·3·3·3) = 1/3
    assert matthews_corrcoef(PREDS, LABELS) == pytest.approx(1 / 3)
    assert matthews_corrcoef(LABELS, LABELS) == pytest.approx(1.0)
    assert matthews_corrcoef(1 - LABELS, LABELS) == pytest.approx(-1.0)


def test_mcc_multiclass_by_hand() -> None:
    # confusion (rows true, cols pred): [[2,0,0],[1,0,1],[0,1,1]]
    # t = [2,2,2], p = [3,1,2], correct = 3, n = 6
    # cov_tp = 3·6 − (6+2+4) = 6; cov_pp = 36 − 14 = 22; cov_tt = 36 − 12 = 24
    labels = np.array([0, 1, 2, 0, 1, 2])
    preds = np.array([0, 2, 1, 0, 0, 2])
    assert matthews_corrcoef(preds, labels) == pytest.approx(6 / math.sqrt(24 * 22))


def test_mcc_degenerate_is_zero() -> None:
    assert matthews_corrcoef(np.ones(5, int), LABELS[:5]) == 0.0  # constant predictions
    assert matthews_corrcoef(np.zeros(3, int), np.zeros(3, int)) == 0.0  # one class only


def test_pearson_by_hand() -> None:
    # dx = [-1, 0, 1], dy = [-5/3, -2/3, 7/3]; Σdxdy = 4, Σdx² = 2, Σdy² = 26/3
    # r = 4 / sqrt(52/3) = sqrt(12/13)
    assert pearson(np.array([1.0, 2, 3]), np.array([1.0, 2, 5])) == pytest.approx(math.sqrt(12 / 13))
    assert pearson(np.array([1, 2, 3]), np.array([6, 4, 2])) == pytest.approx(-1.0)


def test_pearson_constant_input_is_zero() -> None:
    assert pearson(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])) == 0.0


def test_rankdata_averages_ties() -> None:
    # sorted: 5 → 1, 10 → 2, the three 20s share ranks 3, 4, 5 → 4
    np.testing.assert_array_equal(rankdata(np.array([10, 20, 20, 20, 5])), [2, 4, 4, 4, 1])


def test_spearman_with_ties_by_hand() -> None:
    # ranks x = [1, 2.5, 2.5, 4], ranks y = [1, 3, 2, 4]; both mean 2.5
    # dx = [-1.5, 0, 0, 1.5], dy = [-1.5, .5, -.5, 1.5]; Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5
    # ρ = 4.5 / sqrt(22.5) = sqrt(0.9)
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 3, 2, 4])) == pytest.approx(math.sqrt(0.9))
    # monotonic but not linear: ρ = 1 while r < 1
    x, y = np.array([1.0, 2, 3, 4]), np.array([1.0, 8, 27, 64])
    assert spearman(x, y) == pytest.approx(1.0)
    assert pearson(x, y) < 0.99
    assert spearman(np.ones(4), y) == 0.0


def test_inputs_must_match_and_be_non_empty() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(np.array([1, 0]), np.array([1]))
    with pytest.raises(ValueError, match="at least one example"):
        f1(np.array([]), np.array([]))


def test_compute_metrics_classification_uses_argmax() -> None:
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0], [0.2, 0.1]], dtype=np.float32)
    labels = np.array([1, 1, 1, 0])  # preds [1, 0, 1, 0]: TP 2, FN 1 → F1 = 4/5, accuracy 3/4
    result = compute_metrics(get_task("mrpc"), logits, labels)
    assert list(result) == ["f1", "accuracy"]
    assert result == pytest.approx({"f1": 0.8, "accuracy": 0.75})
    assert all(type(value) is float for value in result.values())
    mnli = compute_metrics(get_task("mnli"), np.eye(3)[[0, 2, 1]], np.array([0, 2, 2]))
    assert mnli == pytest.approx({"accuracy": 2 / 3})


def test_compute_metrics_regression_uses_first_column() -> None:
    logits = np.array([[1.0], [2.0], [3.0]])
    result = compute_metrics(get_task("stsb"), logits, np.array([1.0, 2.0, 5.0], dtype=np.float32))
    assert result == pytest.approx({"pearson": math.sqrt(12 / 13), "spearman": 1.0})
    cola = compute_metrics(get_task("cola"), np.eye(2)[PREDS], LABELS)
    assert cola == pytest.approx({"mcc": 1 / 3})


def test_compute_metrics_rejects_wrong_logit_shape() -> None:
    with pytest.raises(ValueError, match=r"task stsb expects logits of shape \[N, 1\]"):
        compute_metrics(get_task("stsb"), np.zeros((3, 2)), np.zeros(3))


def test_against_sklearn_if_installed() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    preds, labels = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert matthews_corrcoef(preds, labels) == pytest.approx(metrics.matthews_corrcoef(labels, preds))
    assert f1(preds % 2, labels % 2) == pytest.approx(metrics.f1_score(labels % 2, preds % 2))


def test_against_scipy_if_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 300).astype(float), rng.normal(size=300)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
