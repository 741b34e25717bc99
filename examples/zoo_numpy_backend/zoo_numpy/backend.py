"""The ``numpy`` backend: a model is its config and canonical weights; predict is the reference forward."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import Batch, Device
from zoo_core.errors import BackendError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, canonical_shapes, check_weights
from zoo_core.testing.reference import reference_logits


@dataclass
class NumpyModel:
    """A BERT classifier as plain arrays in canonical (Hugging Face) names and layouts."""

    config: BertConfig
    weights: Weights


class NumpyBackend:
    """Inference on zoo's float64-accumulating NumPy reference; training and export are not offered."""

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

    def _unsupported(self, what: str) -> BackendError:
        return BackendError(f"the numpy backend cannot {what} (it is an inference-only example)")

    def make_trainer(self, model: NumpyModel, spec: Any) -> Any:
        """Not offered: the spec registers no ``finetune`` capability, so the core never asks."""
        raise self._unsupported("train")

    def make_distill_trainer(self, student: NumpyModel, teacher: NumpyModel, spec: Any) -> Any:
        """Not offered (no ``distill`` capability)."""
        raise self._unsupported("distil")

    def importance(self, model: NumpyModel, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Not offered (no ``width`` capability)."""
        raise self._unsupported("measure importance")

    def make_width_trainer(self, student: NumpyModel, teacher: NumpyModel, spec: Any) -> Any:
        """Not offered (no ``width`` capability)."""
        raise self._unsupported("train widths")

    def export(self, model: NumpyModel, directory: Path, fmt: str, example: Batch) -> Path:
        """Not offered (no ``export`` capability)."""
        raise self._unsupported("export")

    def load_native(self, path: Path) -> Callable[[Batch], np.ndarray]:
        """Not offered (no ``export`` capability)."""
        raise self._unsupported("load exports")

    def save_framework_checkpoint(self, model: NumpyModel, directory: Path) -> Path:
        """Not offered (no ``convert`` capability)."""
        raise self._unsupported("write framework checkpoints")

    def load_framework_checkpoint(self, model: NumpyModel, path: Path) -> None:
        """Not offered (no ``convert`` capability)."""
        raise self._unsupported("read framework checkpoints")
