"""The ONNX file torch's exporter writes, after zoo's surgery (zoo_torch.onnx_graph)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from zoo_core.models.weights import init_weights
from zoo_core.plugins import create_backend
from zoo_core.testing import tiny_batch, tiny_config


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    backend = create_backend("torch", "cpu", {})
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    return Path(backend.export(model, tmp_path_factory.mktemp("onnx"), "onnx", tiny_batch()))


def test_no_recorded_intermediate_shapes_and_strict_inference_passes(onnx_file: Path) -> None:
    proto = onnx.load(str(onnx_file))
    assert len(proto.graph.value_info) == 0  # the exporter's trace shapes contradicted the dynamic graph
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def test_onnxruntime_quantizer_accepts_the_file_as_written(onnx_file: Path, tmp_path: Path) -> None:
    """Before the surgery: ``Inferred shape and existing shape differ in dimension 0: (32) vs (2)``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = tmp_path / "int8.onnx"
    quantize_dynamic(str(onnx_file), str(target), weight_type=QuantType.QInt8, per_channel=True)
    assert target.stat().st_size > 0
