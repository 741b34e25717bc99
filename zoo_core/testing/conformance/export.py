"""Conformance of capabilities ``export`` and ``int8``: ONNX, the native format, native INT8.

Both formats reproduce ``predict`` at any batch size and length; the ONNX file is one
self-contained ``model.onnx`` with the contract's input and output names
(:data:`~zoo_core.backend.EXPORT_INPUTS`, :data:`~zoo_core.backend.EXPORT_OUTPUT`);
an unknown format is an :class:`~zoo_core.errors.ExportError`.  A native INT8 model is
one file, leaves the model unchanged and stays close to ``predict`` at any shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT
from zoo_core.errors import ExportError
from zoo_core.testing.conformance.helpers import (
    REFERENCE_CASES,
    ConformanceBase,
    FullBackend,
    _model,
    tiny_batch,
    tiny_config,
)


class ExportConformance(ConformanceBase):
    """Export: each test skips unless the backend declares ``export``."""

    # ---- export ------------------------------------------------------------------
    @pytest.mark.usefixtures("exports")
    @pytest.mark.parametrize("fmt", ["onnx", "native"])
    def test_export_reproduces_the_model_at_any_shape(
        self, backend: FullBackend, fmt: str, tmp_path: Path
    ) -> None:
        from zoo_core.runners.export import onnx_predictor

        config = REFERENCE_CASES["default"]
        model, _ = _model(backend, config, seed=1)
        example = tiny_batch(seed=7, batch_size=4, max_len=12)
        path = backend.export(model, tmp_path, fmt, example)  # type: ignore[arg-type]
        assert path.is_file() and path.parent == tmp_path
        predict = onnx_predictor(path) if fmt == "onnx" else backend.load_native(path)
        for batch in (
            example,
            tiny_batch(seed=8, batch_size=7, max_len=21),
            tiny_batch(seed=9, batch_size=1),
        ):
            np.testing.assert_allclose(predict(batch), backend.predict(model, batch), rtol=0, atol=1e-5)

    @pytest.mark.usefixtures("exports")
    def test_onnx_file_is_self_contained_with_the_contract_names(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        onnx = pytest.importorskip("onnx")
        model, _ = _model(backend, tiny_config())
        path = backend.export(model, tmp_path, "onnx", tiny_batch(seed=0, batch_size=4, max_len=12))
        assert path.name == "model.onnx"
        assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no external data, no leftovers
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert [i.name for i in proto.graph.input] == list(EXPORT_INPUTS)
        assert [o.name for o in proto.graph.output] == [EXPORT_OUTPUT]
        for tensor in proto.graph.input:
            assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
            dims = tensor.type.tensor_type.shape.dim
            assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims)  # both axes symbolic

    @pytest.mark.usefixtures("exports")
    def test_onnx_passes_strict_shape_inference_and_quantizes_as_is(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        """No shapes that contradict the graph: onnxruntime's quantizer takes the file unchanged."""
        onnx = pytest.importorskip("onnx")
        quantization = pytest.importorskip("onnxruntime.quantization")
        model, _ = _model(backend, tiny_config())
        path = backend.export(model, tmp_path / "fp32", "onnx", tiny_batch(seed=0, batch_size=4, max_len=12))
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
        quantization.quantize_dynamic(str(path), str(tmp_path / "int8.onnx"), per_channel=True)
        from zoo_core.runners.export import onnx_predictor

        batch = tiny_batch(seed=1, batch_size=3, max_len=9)
        np.testing.assert_allclose(
            onnx_predictor(tmp_path / "int8.onnx")(batch), backend.predict(model, batch), atol=0.1
        )

    @pytest.mark.usefixtures("exports")
    def test_unknown_format_is_an_export_error(self, backend: FullBackend, tmp_path: Path) -> None:
        model, _ = _model(backend, tiny_config())
        with pytest.raises(ExportError, match="unknown export format 'tflite'") as info:
            backend.export(model, tmp_path, "tflite", tiny_batch())  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
        assert not list(tmp_path.iterdir())

    # ---- native INT8 -------------------------------------------------------------
    @pytest.mark.usefixtures("int8")
    def test_native_int8_is_one_file_close_to_the_model_at_any_shape(
        self, backend: FullBackend, tmp_path: Path
    ) -> None:
        config = REFERENCE_CASES["default"]
        model, weights = _model(backend, config, seed=1)
        example = tiny_batch(seed=7, batch_size=4, max_len=12)
        path = backend.quantize_native_int8(model, tmp_path, example)
        assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
        dumped = backend.dump_weights(model)
        assert all(np.array_equal(dumped[name], value) for name, value in weights.items()), "model changed"
        predict = backend.load_native_int8(path)
        for batch in (
            example,
            tiny_batch(seed=8, batch_size=7, max_len=21),
            tiny_batch(seed=9, batch_size=1),
        ):
            logits = predict(batch)
            assert logits.dtype == np.float32 and logits.shape == (len(batch), config.num_labels)
            np.testing.assert_allclose(logits, backend.predict(model, batch), rtol=0, atol=0.1)
