"""The paddle backend's export: ONNX (paddle2onnx, run in onnxruntime) and Paddle inference models.

Each format is exported once (module-scoped fixtures) and checked against
``backend.predict`` on the example batch, on a batch of another size and length, and
on a single example.  The ONNX file's contract (one file, the input and output names) and
unknown formats are the conformance suite's (:mod:`zoo_core.testing.conformance.export`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo_core.backend import Backend, Batch
from zoo_core.errors import ExportError
from zoo_core.models.weights import init_weights
from zoo_core.runners.export import onnx_predictor
from zoo_core.testing import pad_batch, tiny_batch, tiny_config

Predict = Callable[[Batch], np.ndarray]

EXAMPLE = tiny_batch(seed=0, batch_size=4, max_len=12)
BATCHES = {
    "example": EXAMPLE,
    "other-shape": pad_batch(tiny_batch(seed=1, batch_size=7, max_len=17), 20),
    "single": tiny_batch(seed=2, batch_size=1, max_len=9),
}


@pytest.fixture(scope="module")
def model(backend: Backend) -> Any:
    """A tiny model with seeded weights and dropout 0.1 in its config (an export must not drop)."""
    config = tiny_config()
    assert config.hidden_dropout_prob > 0
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, seed=0))
    return model


@pytest.fixture(scope="module")
def onnx_path(backend: Backend, model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model exported as ONNX, from training mode (the export must switch to eval itself)."""
    model.train()
    path = backend.export(model, tmp_path_factory.mktemp("onnx"), "onnx", EXAMPLE)
    assert model.training  # put back as it was
    return path


@pytest.fixture(scope="module")
def native_path(backend: Backend, model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model exported as a Paddle inference model, from training mode."""
    model.train()
    path = backend.export(model, tmp_path_factory.mktemp("native"), "native", EXAMPLE)
    assert model.training
    return path


def test_native_files(native_path: Path) -> None:
    assert native_path.name == "model.json"
    assert sorted(p.name for p in native_path.parent.iterdir()) == ["model.json", "model.pdiparams"]


@pytest.mark.parametrize("fmt", ["onnx", "native"])
@pytest.mark.parametrize("which", list(BATCHES))
def test_export_matches_predict(
    backend: Backend, model: Any, onnx_path: Path, native_path: Path, fmt: str, which: str
) -> None:
    predict = onnx_predictor(onnx_path) if fmt == "onnx" else backend.load_native(native_path)
    batch = BATCHES[which]
    logits = predict(batch)
    assert logits.dtype == np.float32 and logits.shape == (len(batch), 2)
    np.testing.assert_allclose(logits, backend.predict(model, batch), rtol=0, atol=1e-5)


def test_load_native_errors(backend: Backend, native_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such file"):
        backend.load_native(tmp_path / "model.json")
    with pytest.raises(ExportError, match=r"expected model\.json"):
        backend.load_native(tmp_path / "model.onnx")
    (tmp_path / "model.json").write_text("not a program")
    with pytest.raises(ExportError, match="pdiparams"):
        backend.load_native(tmp_path / "model.json")
    (tmp_path / "model.pdiparams").write_bytes(native_path.with_suffix(".pdiparams").read_bytes())
    with pytest.raises(ExportError, match="not a readable paddle inference model"):
        backend.load_native(tmp_path / "model.json")
