"""DynaBERT width arithmetic on canonical weights, in numpy, for every backend.

Width ``w`` keeps ``round(w × heads)`` attention heads and ``round(w × intermediate)``
FFN neurons in every layer.  Only the query/key/value projections (their output rows),
the attention output projection (its input columns), the FFN input layer (its rows) and
the FFN output layer (its input columns) shrink; embeddings, LayerNorms, the pooler and
the classifier keep their full size, and so does the per-head width.

Two operations make a width-adaptive model:

* :func:`reorder` permutes heads and neurons so the most important come first.  It
  does not change the function the model computes.
* :func:`slice_to_width` keeps the first heads and neurons, giving a physically smaller
  model whose config says so (``num_attention_heads`` included: an exported sub-model
  with the full head count computes garbage, PaddleNLP#1466).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, check_weights

#: DynaBERT's widths: 12, 10, 8 and 6 of 12 heads
DEFAULT_WIDTHS = (1.0, 0.8333, 0.6667, 0.5)


def width_dims(config: BertConfig, width_mult: float) -> tuple[int, int]:
    """Heads and FFN neurons kept at ``width_mult`` (each at least 1)."""
    if not 0.0 < width_mult <= 1.0:
        raise ModelError(f"width_mult must be in (0, 1], got {width_mult}")
    heads = max(1, round(width_mult * config.num_attention_heads))
    neurons = max(1, round(width_mult * config.intermediate_size))
    return heads, neurons


def check_width_teacher(student: BertConfig, teacher: BertConfig, widths: Sequence[float]) -> None:
    """Raise :class:`ModelError` (one line) unless ``student`` can learn from ``teacher`` at ``widths``.

    Every backend's width trainer calls this first: DynaBERT matches every hidden state
    and the logits, so layers, hidden size and labels must agree.
    """
    for field in ("num_hidden_layers", "hidden_size", "num_labels"):
        if getattr(student, field) != getattr(teacher, field):
            raise ModelError(
                f"width training needs the teacher's shape: {field} is {getattr(student, field)} "
                f"in the student, {getattr(teacher, field)} in the teacher"
            )
    if not widths:
        raise ModelError("width training needs at least one width")
    for width in widths:
        width_dims(student, width)  # raises for a width outside (0, 1]


def width_config(config: BertConfig, width_mult: float) -> BertConfig:
    """The config of the sub-model at ``width_mult``: fewer heads and neurons, same head size."""
    heads, neurons = width_dims(config, width_mult)
    return config.replace(
        num_attention_heads=heads,
        intermediate_size=neurons,
        attention_head_size=config.head_size,
        extra={**config.extra, "width_mult": width_mult},
    )


def _layer(i: int) -> str:
    return f"bert.encoder.layer.{i}."


def _head_columns(order: np.ndarray, head_size: int) -> np.ndarray:
    """Indices of the Q/K/V output units of heads ``order``, head by head."""
    return (order[:, None] * head_size + np.arange(head_size)[None, :]).reshape(-1)


def _select_units(
    weights: Weights, config: BertConfig, heads: list[np.ndarray], neurons: list[np.ndarray]
) -> Weights:
    """Weights restricted (and ordered) to the given heads and neurons of every layer."""
    out = dict(weights)
    for i in range(config.num_hidden_layers):
        p = _layer(i)
        units = _head_columns(heads[i], config.head_size)
        for proj in ("query", "key", "value"):
            out[p + f"attention.self.{proj}.weight"] = weights[p + f"attention.self.{proj}.weight"][units]
            out[p + f"attention.self.{proj}.bias"] = weights[p + f"attention.self.{proj}.bias"][units]
        out[p + "attention.output.dense.weight"] = weights[p + "attention.output.dense.weight"][:, units]
        out[p + "intermediate.dense.weight"] = weights[p + "intermediate.dense.weight"][neurons[i]]
        out[p + "intermediate.dense.bias"] = weights[p + "intermediate.dense.bias"][neurons[i]]
        out[p + "output.dense.weight"] = weights[p + "output.dense.weight"][:, neurons[i]]
    return {name: np.ascontiguousarray(value) for name, value in out.items()}


def reorder(
    weights: Mapping[str, np.ndarray],
    config: BertConfig,
    head_importance: np.ndarray,
    neuron_importance: np.ndarray,
) -> Weights:
    """Permute every layer's heads and FFN neurons by descending importance.

    ``head_importance`` is ``[layers, heads]``, ``neuron_importance`` ``[layers,
    intermediate]``; ties keep their original order.  The model's function is unchanged.
    """
    layers = config.num_hidden_layers
    if head_importance.shape != (layers, config.num_attention_heads):
        raise ModelError(
            f"head importance has shape {head_importance.shape}, "
            f"expected {(layers, config.num_attention_heads)}"
        )
    if neuron_importance.shape != (layers, config.intermediate_size):
        raise ModelError(
            f"neuron importance has shape {neuron_importance.shape}, "
            f"expected {(layers, config.intermediate_size)}"
        )
    check_weights(weights, config, source="reorder")
    heads = [np.argsort(-head_importance[i], kind="stable") for i in range(layers)]
    neurons = [np.argsort(-neuron_importance[i], kind="stable") for i in range(layers)]
    return _select_units(dict(weights), config, heads, neurons)


def slice_to_width(
    weights: Mapping[str, np.ndarray], config: BertConfig, width_mult: float
) -> tuple[BertConfig, Weights]:
    """The sub-model at ``width_mult``: the first heads and neurons of every layer, and its config."""
    check_weights(weights, config, source="slice_to_width")
    heads, neurons = width_dims(config, width_mult)
    layers = config.num_hidden_layers
    sliced = _select_units(dict(weights), config, [np.arange(heads)] * layers, [np.arange(neurons)] * layers)
    return width_config(config, width_mult), sliced
