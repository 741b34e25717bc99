"""Numpy references for DynaBERT: importance by finite differences, and a width step's losses.

Both follow :class:`zoo_core.backend.WidthSpec` and ``Backend.importance`` to the
letter, in float64, from nothing but :func:`zoo_core.testing.reference.reference_forward`
and :func:`zoo_core.models.width.slice_to_width`, so a backend that matches them
trains and prunes exactly as the core defines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zoo_core.backend import Batch, WidthSpec, width_loss_name
from zoo_core.dropout import dropout_masks
from zoo_core.models.config import BertConfig
from zoo_core.models.width import slice_to_width
from zoo_core.testing.distill_reference import log_softmax, logits_loss, masked_mse
from zoo_core.testing.reference import ReferenceOutput, reference_forward


def task_loss(weights: Mapping[str, np.ndarray], config: BertConfig, batch: Batch) -> float:
    """The mean cross-entropy (squared error for a regression head) of ``batch``, no dropout."""
    assert batch.labels is not None
    logits = reference_forward(weights, config, batch).logits
    if config.is_regression:
        return float(((logits[:, 0] - batch.labels) ** 2).mean())
    log_probs = log_softmax(logits)
    return float(-log_probs[np.arange(len(batch)), batch.labels].mean())


def _scaled_derivative(
    weights: dict[str, np.ndarray],
    config: BertConfig,
    batch: Batch,
    parts: list[tuple[str, Any]],
    eps: float,
) -> float:
    """``d loss / da`` at ``a = 1``, the given parts of the weights scaled by ``a`` (central difference)."""
    values = []
    for a in (1.0 + eps, 1.0 - eps):
        changed = dict(weights)
        for name, index in parts:
            changed[name] = weights[name].copy()
            changed[name][index] *= a
        values.append(task_loss(changed, config, batch))
    return (values[0] - values[1]) / (2 * eps)


def reference_importance(
    weights: Mapping[str, np.ndarray], config: BertConfig, batch: Batch, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray]:
    """``Backend.importance`` by finite differences in float64: heads ``[L, H]``, neurons ``[L, I]``.

    Gating head ``h`` by ``g`` is scaling its value projection (rows and bias) by ``g``:
    the context vectors are linear in the values.  ``sum W*dW`` over a set of weights is
    the derivative of the loss when that set is scaled by ``a``, at ``a = 1``.
    """
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    size = config.head_size
    heads = np.zeros((config.num_hidden_layers, config.num_attention_heads))
    neurons = np.zeros((config.num_hidden_layers, config.intermediate_size))
    for i in range(config.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        for h in range(config.num_attention_heads):
            rows = (slice(h * size, (h + 1) * size),)
            value = p + "attention.self.value."
            parts = [(value + "weight", rows), (value + "bias", rows)]
            heads[i, h] = abs(_scaled_derivative(w, config, batch, parts, eps))
        for n in range(config.intermediate_size):
            first = [(p + "intermediate.dense.weight", (n,)), (p + "intermediate.dense.bias", (n,))]
            second = [(p + "output.dense.weight", (slice(None), n))]
            neurons[i, n] = abs(_scaled_derivative(w, config, batch, first, eps)) + abs(
                _scaled_derivative(w, config, batch, second, eps)
            )
    return heads, neurons


def reference_width_losses(
    student_weights: Mapping[str, np.ndarray],
    teacher_weights: Mapping[str, np.ndarray],
    config: BertConfig,
    batch: Batch,
    spec: WidthSpec,
) -> dict[str, float]:
    """A width step's losses before the update: ``loss`` and ``logits@w``/``hidden@w`` for every width.

    Each width's student is the sliced sub-model (:func:`slice_to_width`), which is what
    running the full model at that width must compute.  When ``config`` has dropout,
    the ``k``-th width drops under the core's masks of stream ``k``
    (:func:`zoo_core.dropout.dropout_masks`, seed ``spec.train.seed``; a narrower width
    keeps the first heads of each attention mask); the teacher never drops.
    """
    teacher: ReferenceOutput = reference_forward(teacher_weights, config, batch)
    mask = np.asarray(batch.attention_mask)
    regression = spec.train.objective == "regression"
    out: dict[str, float] = {}
    total = 0.0
    for stream, width in enumerate(spec.widths):
        sliced_config, sliced = slice_to_width(student_weights, config, width)
        masks = dropout_masks(config, batch, spec.train.seed, stream=stream)
        student = reference_forward(sliced, sliced_config, batch, masks)
        logits = logits_loss(student.logits, teacher.logits, regression, spec.temperature)
        hidden = sum(
            masked_mse(s, t, mask) for s, t in zip(student.hidden_states, teacher.hidden_states, strict=True)
        )
        out[width_loss_name("logits", width)] = logits
        out[width_loss_name("hidden", width)] = hidden
        total += spec.loss_weights.get("logits", 0.0) * logits + spec.loss_weights.get("hidden", 0.0) * hidden
    out["loss"] = total
    return out
