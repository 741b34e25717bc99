"""Plain-numpy TinyBERT losses that pin what every backend's distillation trainer computes.

Each function is :class:`~zoo_core.backend.DistillSpec`'s docstring written out in
float64, over the outputs of :func:`zoo_core.testing.reference.reference_forward`
(or any :class:`~zoo_core.testing.reference.ReferenceOutput`).
``tests/test_distill_reference.py`` checks them against hand-computed values.
"""

from __future__ import annotations

import numpy as np

from zoo_core.backend import DistillSpec
from zoo_core.testing.reference import ReferenceOutput

#: a projection ``P(x) = x @ weight.T + bias``: weight ``[hidden_T, hidden_S]``, bias ``[hidden_T]``
Projection = tuple[np.ndarray, np.ndarray]


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def project(x: np.ndarray, projection: Projection | None) -> np.ndarray:
    """``P(x)``: ``x @ weight.T + bias``, or ``x`` itself for the identity (None)."""
    if projection is None:
        return _f64(x)
    weight, bias = projection
    return np.asarray(_f64(x) @ _f64(weight).T + _f64(bias))


def masked_mse(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray) -> float:
    """``sum(m * (student - teacher)**2) / (n * hidden)`` over ``[B, T, hidden]`` states.

    ``n`` is the number of real tokens (``mask.sum()``), ``hidden`` the last axis.
    """
    m = _f64(mask)[:, :, None]
    total = float((m * (_f64(student) - _f64(teacher)) ** 2).sum())
    return total / (float(m.sum()) * teacher.shape[-1])


def attention_mse(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray) -> float:
    """``sum(m_q * m_k * (student - teacher)**2) / (heads * sum_b n_b**2)`` over ``[B, heads, T, T]``."""
    m = _f64(mask)
    pairs = m[:, None, :, None] * m[:, None, None, :]  # [B, 1, T(query), T(key)]
    total = float((pairs * (_f64(student) - _f64(teacher)) ** 2).sum())
    return total / (teacher.shape[1] * float((m.sum(axis=1) ** 2).sum()))


def soft_cross_entropy(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """``mean_b(-sum_c softmax(T.z / t)_c * log_softmax(S.z / t)_c)`` over ``[B, C]`` logits."""
    target = np.exp(log_softmax(_f64(teacher) / temperature))
    return float(-(target * log_softmax(_f64(student) / temperature)).sum(axis=1).mean())


def logits_loss(student: np.ndarray, teacher: np.ndarray, regression: bool, temperature: float) -> float:
    """The prediction loss: :func:`soft_cross_entropy`, or ``mean_b(sum_c (S.z - T.z)**2)`` for regression."""
    if regression:
        return float(((_f64(student) - _f64(teacher)) ** 2).sum(axis=1).mean())
    return soft_cross_entropy(student, teacher, temperature)


def reference_distill_losses(
    student_out: ReferenceOutput,
    teacher_out: ReferenceOutput,
    mask: np.ndarray,
    spec: DistillSpec,
    projection: Projection | None = None,
) -> dict[str, float]:
    """The stage's losses, unweighted, plus ``"loss"``: ``sum(loss_weights[k] * loss_k)``.

    ``mask`` is the batch's ``attention_mask`` ``[B, T]``; ``projection`` is ``P``
    (None: the identity, which needs equal hidden sizes).  Student layer ``i``
    (1-based) learns from teacher layer ``spec.layer_map[i - 1]``.
    """
    losses: dict[str, float] = {}
    if spec.stage == "intermediate":
        s_h, t_h = student_out.hidden_states, teacher_out.hidden_states
        losses["embedding"] = masked_mse(project(s_h[0], projection), t_h[0], mask)
        losses["hidden"] = sum(
            masked_mse(project(s_h[i], projection), t_h[j], mask) for i, j in enumerate(spec.layer_map, 1)
        )
        losses["attention"] = sum(
            attention_mse(student_out.scores[i - 1], teacher_out.scores[j - 1], mask)
            for i, j in enumerate(spec.layer_map, 1)
        )
    else:
        losses["logits"] = logits_loss(
            student_out.logits, teacher_out.logits, spec.train.objective == "regression", spec.temperature
        )
    losses["loss"] = sum(spec.loss_weights.get(name, 0.0) * value for name, value in losses.items())
    return losses
