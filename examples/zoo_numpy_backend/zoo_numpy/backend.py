"""The ``numpy`` backend: a model is its config and canonical weights; predict is the reference forward."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from zoo_core.backend import Batch, Device
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, canonical_shapes, check_weights
from zoo_core.testing.reference import reference_logits


@dataclass
class NumpyModel:
    """A BERT classifier as plain arrays in canonical (Hugging Face) names and layouts."""

    config: BertConfig
    weights: Weights


class NumpyBackend:
    """Inference on zoo's float64-accumulating NumPy reference: the core ``Backend`` protocol only.

    It implements no capability protocol (training, export, conversion), and its spec
    declares none; the conformance suite checks that the two agree.
    """

    name = "numpy"
    rank = 0
    world_size = 1

    def __init__(self, device: Device) -> None:
        self.device = device

    def barrier(self) -> None:
        """Nothing to wait for: this backend never runs data-parallel (its spec has no launcher)."""

    def build_model(self, config: BertConfig) -> NumpyModel:
        """A model of ``config`` with zeroed weights (the core always loads weights next)."""
        shapes = canonical_shapes(config)
        return NumpyModel(config, {name: np.zeros(shape, np.float32) for name, shape in shapes.items()})

    def load_weights(self, model: NumpyModel, weights: Mapping[str, np.ndarray]) -> None:
        """Copy canonical weights in, checked against the config (a wrong shape names the parameter)."""
        check_weights(weights, model.config, source="load_weights")
        model.weights = {name: np.array(value, dtype=np.float32) for name, value in weights.items()}

    def dump_weights(self, model: NumpyModel) -> dict[str, np.ndarray]:
        """Copies of the weights, canonical names and layouts, float32."""
        return {name: value.copy() for name, value in model.weights.items()}

    def predict(self, model: NumpyModel, batch: Batch) -> np.ndarray:
        """Logits ``[B, num_labels]`` (float32): the reference forward, no dropout."""
        return reference_logits(model.weights, model.config, batch).astype(np.float32)
