"""Sub-models at a width, as the width runner evaluates them and ``zoo export`` writes them."""

from __future__ import annotations

from typing import Any

from zoo_core.backend import Backend
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights
from zoo_core.models.width import slice_to_width


def width_metric(metric: str, width: float) -> str:
    """How a metric at a width is named in logs and result.json, e.g. ``accuracy@0.6667``."""
    return f"{metric}@{width:g}"


def sliced_model(
    backend: Backend, weights: Weights, config: BertConfig, width: float
) -> tuple[Any, BertConfig]:
    """The physically smaller sub-model at ``width`` on ``backend``, and its config."""
    sliced_config, sliced = slice_to_width(weights, config, width)
    model = backend.build_model(sliced_config)
    backend.load_weights(model, sliced)
    return model, sliced_config
