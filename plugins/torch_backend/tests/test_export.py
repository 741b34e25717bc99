"""The torch backend's export: ONNX run in onnxruntime and torch.export archives, on a tiny model.

Each format is exported once (module-scoped fixtures: an export takes a few seconds)
and checked against ``backend.predict`` on the example batch, on a batch of another
size and length, and on a single example.  The ONNX file's contract (one file, the input
and output names) and unknown formats are the conformance suite's
(:mod:`zoo_core.testing.conformance.export`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from zoo_torch.export import traceable
from zoo_torch.model import BertForSequenceClassification

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Backend, Batch
from zoo_core.errors import ExportError, ZooError
from zoo_core.models.weights import init_weights
from zoo_core.testing import pad_batch, tiny_batch, tiny_config

Predict = Callable[[Batch], np.ndarray]

EXAMPLE = tiny_batch(seed=0, batch_size=4, max_len=12)
BATCHES = {
    "example": EXAMPLE,
    "other-shape": pad_batch(tiny_batch(seed=1, batch_size=7, max_len=17), 20),
    "single": tiny_batch(seed=2, batch_size=1, max_len=9),
}


@pytest.fixture(scope="module")
def model(backend: Backend) -> BertForSequenceClassification:
    """A tiny model with seeded weights (dropout 0.1, so exporting in training mode would show)."""
    config = tiny_config()
    assert config.hidden_dropout_prob > 0
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, seed=0))
    return model


@pytest.fixture(scope="module")
def onnx_path(backend: Backend, model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model exported as ONNX, from training mode (the export must switch to eval itself)."""
    model.train()
    return backend.export(model, tmp_path_factory.mktemp("onnx"), "onnx", EXAMPLE)


@pytest.fixture(scope="module")
def onnx_predict(onnx_path: Path) -> Predict:
    """The ONNX export in one onnxruntime session."""
    return onnx_predictor(onnx_path)


@pytest.fixture(scope="module")
def native_path(backend: Backend, model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model exported in torch's native format, from training mode."""
    model.train()
    path = backend.export(model, tmp_path_factory.mktemp("native"), "native", EXAMPLE)
    assert model.training  # put back as it was
    return path


@pytest.fixture(scope="module")
def native_predict(backend: Backend, native_path: Path) -> Predict:
    """The native export loaded back through the backend (once: loading takes about a second)."""
    return backend.load_native(native_path)


def onnx_predictor(path: Path) -> Predict:
    """Logits from ``path`` in onnxruntime on the CPU, the three inputs fed by name."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def predict(batch: Batch) -> np.ndarray:
        feed = {name: np.asarray(getattr(batch, name), np.int64) for name in EXPORT_INPUTS}
        (logits,) = session.run([EXPORT_OUTPUT], feed)
        return np.asarray(logits)

    return predict


# ---- ONNX ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", list(BATCHES))
def test_onnx_matches_predict(backend: Backend, model: Any, onnx_predict: Predict, which: str) -> None:
    batch = BATCHES[which]
    logits = onnx_predict(batch)
    assert logits.dtype == np.float32
    assert logits.shape == (len(batch), 2)
    np.testing.assert_allclose(logits, backend.predict(model, batch), rtol=0, atol=1e-5)


# ---- native (torch.export) -------------------------------------------------------------


def test_native_file(native_path: Path) -> None:
    assert [p.name for p in native_path.parent.iterdir()] == ["model.pt2"]


@pytest.mark.parametrize("which", list(BATCHES))
def test_native_matches_predict(backend: Backend, model: Any, native_predict: Predict, which: str) -> None:
    batch = BATCHES[which]
    logits = native_predict(batch)
    assert logits.dtype == np.float32
    assert logits.shape == (len(batch), 2)
    np.testing.assert_allclose(logits, backend.predict(model, batch), rtol=0, atol=1e-5)


def test_size_one_examples_are_grown_for_tracing() -> None:
    # torch.export specialises axes traced at size 1, so a one-example batch is grown first
    one = Batch(*(np.ones((1, 1), np.int64) for _ in range(3)))
    grown = traceable(one)
    assert grown.input_ids.shape == grown.token_type_ids.shape == (2, 2)
    assert grown.attention_mask.tolist() == [[1, 0], [1, 0]]
    assert traceable(EXAMPLE).input_ids.shape == EXAMPLE.input_ids.shape


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.pt2", None, "no such file"),
        ("garbage.pt2", b"not a zip archive", "not a readable torch.export archive"),
        ("model.onnx", b"", "not a native torch export"),
    ],
)
def test_unreadable_native_file_is_an_export_error(
    backend: Backend, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ExportError, match=message) as info:
        backend.load_native(path)
    assert isinstance(info.value, ZooError)
    assert "\n" not in str(info.value)
