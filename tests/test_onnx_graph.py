"""The core's own ONNX graph (zoo_core.onnx_export): valid, equal to the torch backend, fusable.

Every case is a tiny model with perturbed weights (non-zero biases, LayerNorm scales off
1) so a wrong op shows in the logits.  The reference is the torch backend's ``predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch
from zoo_core.errors import CheckpointError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights
from zoo_core.models.width import slice_to_width
from zoo_core.testing.conformance.helpers import regression_config, tiny_config

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from zoo_core.errors import ExportError  # noqa: E402
from zoo_core.onnx_export import build_model, expected_fusions, optimize_onnx, write_onnx  # noqa: E402
from zoo_core.plugins import create_backend  # noqa: E402

TOLERANCE = 1e-4
#: (batch size, sequence length): one row, the shortest sequence, odd sizes, the full position table
SHAPES = [(1, 2), (3, 7), (8, 16), (2, 64)]


def perturbed(config: BertConfig, seed: int = 0) -> Weights:
    """BERT's initial weights plus noise on every parameter (biases and LayerNorms included)."""
    rng = np.random.default_rng(seed + 1)
    weights = init_weights(config, seed)
    return {k: (v + rng.normal(0.0, 0.1, v.shape)).astype(np.float32) for k, v in weights.items()}


def width_case() -> tuple[BertConfig, Weights]:
    """A DynaBERT sub-model: 3 of 4 heads of width 8, so Q/K/V are 24 wide in a 32-wide model."""
    config = tiny_config()
    sliced, weights = slice_to_width(perturbed(config), config, 0.75)
    assert sliced.num_attention_heads * sliced.head_size != sliced.hidden_size
    return sliced, weights


def _cases() -> dict[str, tuple[BertConfig, Weights]]:
    cases = {
        "gelu": tiny_config(),
        "relu": tiny_config(hidden_act="relu"),
        "gelu_new": tiny_config(hidden_act="gelu_new", layer_norm_eps=1e-5),
        "regression": regression_config(type_vocab_size=1),
    }
    out = {name: (config, perturbed(config)) for name, config in cases.items()}
    out["width"] = width_case()
    return out


CASES = _cases()


def batch(config: BertConfig, size: int, length: int, seed: int = 0, left_pad: bool = False) -> Batch:
    """Random tokens with random lengths (the first row full), padding at the end (or the start)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config.vocab_size, (size, length))
    types = rng.integers(0, config.type_vocab_size, (size, length))
    lengths = rng.integers(1, length + 1, size)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    if left_pad:
        mask = mask[:, ::-1].copy()
    return Batch(ids * mask, types * mask, mask)


def feed(b: Batch) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(b, name), np.int64) for name in EXPORT_INPUTS}


def session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def torch_backend() -> Any:
    return create_backend("torch", "cpu", {})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, dict[str, int]]]:
    """Every case written (plain) and optimized (fused), with the fusion counts."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, (config, weights) in CASES.items():
        plain = write_onnx(config, weights, root / name / "model.onnx")
        fused = root / name / "model_fused.onnx"
        out[name] = (plain, fused, optimize_onnx(plain, fused, config))
    return out


def torch_logits(backend: Any, config: BertConfig, weights: Weights, b: Batch) -> np.ndarray:
    model = backend.build_model(config)
    backend.load_weights(model, weights)
    return np.asarray(backend.predict(model, b), np.float32).reshape(len(b), config.num_labels)


def test_the_file_is_valid_onnx_with_the_export_contract(files: dict[str, Any]) -> None:
    for name, (plain, _, _) in files.items():
        model = onnx.load(str(plain))
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        graph = inferred.graph
        assert [i.name for i in graph.input] == list(EXPORT_INPUTS), name
        assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.input)
        assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
        (output,) = graph.output
        assert output.name == EXPORT_OUTPUT and output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        labels = CASES[name][0].num_labels
        assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", labels]
        assert not {n.op_type for n in graph.node} & {"Dropout", "RandomNormal"}


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_the_torch_backend_plain_and_fused(
    name: str, files: dict[str, Any], torch_backend: Any
) -> None:
    config, weights = CASES[name]
    plain, fused, _ = files[name]
    sessions = {"plain": session(plain), "fused": session(fused)}
    batches = [batch(config, size, length, seed=i) for i, (size, length) in enumerate(SHAPES)]
    batches.append(batch(config, 4, 9, seed=9, left_pad=True))  # the fused Attention gets the raw mask
    for b in batches:
        assert not b.attention_mask.all() or len(b) == 1
        expected = torch_logits(torch_backend, config, weights, b)
        assert np.abs(expected).max() > 1e-2  # the check means something
        for kind, s in sessions.items():
            (got,) = s.run([EXPORT_OUTPUT], feed(b))
            assert got.shape == (len(b), config.num_labels)
            error = np.abs(got - expected).max()
            assert error < TOLERANCE, f"{name} {kind} {b.input_ids.shape}: max error {error}"


@pytest.mark.parametrize("name", list(CASES))
def test_onnxruntime_fuses_every_layer(name: str, files: dict[str, Any]) -> None:
    config = CASES[name][0]
    layers = config.num_hidden_layers
    _, fused, counts = files[name]
    gelu = {"gelu": "BiasGelu", "gelu_new": "FastGelu"}.get(config.hidden_act)
    assert (
        counts
        == expected_fusions(config)
        == {
            "EmbedLayerNormalization": 1,
            "Attention": layers,
            "SkipLayerNormalization": 2 * layers,
            "LayerNormalization": 0,
            "Gelu": 0,
            "BiasGelu": layers if gelu == "BiasGelu" else 0,
            "FastGelu": layers if gelu == "FastGelu" else 0,
        }
    )
    nodes = onnx.load(str(fused)).graph.node
    ops = [n.op_type for n in nodes]
    assert not set(ops) & {"Softmax", "Erf", "Pow", "LayerNormalization"}
    assert ops.count("Tanh") == 1  # the pooler's
    attention = [n for n in nodes if n.op_type == "Attention"]
    heads = {a.i for n in attention for a in n.attribute if a.name == "num_heads"}
    assert heads == {config.num_attention_heads}


def test_dynamic_int8_quantization_accepts_the_file(files: dict[str, Any], tmp_path: Path) -> None:
    """zoo's quantization (7-bit weights on a CPU without VNNI, where 8-bit ones saturate) stays close."""
    from zoo_core.runners.int8 import Int8Spec, quantize_onnx

    config, _ = CASES["gelu"]
    plain, _, _ = files["gelu"]
    quantized = tmp_path / "model_int8.onnx"
    quantize_onnx(plain, quantized, Int8Spec(), None)
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}
    b = batch(config, 3, 7)
    (got,) = session(quantized).run([EXPORT_OUTPUT], feed(b))
    (expected,) = session(plain).run([EXPORT_OUTPUT], feed(b))
    assert got.shape == expected.shape and np.isfinite(got).all()
    assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max() + 0.05


def test_missing_or_misshapen_weights_are_one_checkpoint_error(tmp_path: Path) -> None:
    config, weights = CASES["gelu"]
    without_head = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    with pytest.raises(CheckpointError, match="missing"):
        write_onnx(config, without_head, tmp_path / "a.onnx")
    with pytest.raises(CheckpointError, match="shape"):
        write_onnx(config.replace(intermediate_size=48), weights, tmp_path / "b.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_opset_below_17_is_refused() -> None:
    config, weights = CASES["gelu"]
    with pytest.raises(ValueError, match="opset 17"):
        build_model(config, weights, opset=16)


def test_an_incomplete_fusion_is_an_export_error(tmp_path: Path) -> None:
    """A graph the fusions do not fully match (here: the mask Mul's constant made positive) is refused."""
    config, weights = CASES["gelu"]
    model = build_model(config, weights)
    for tensor in model.graph.initializer:
        if tensor.name == "bert.extended_attention_mask.value":
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.array(1.0, np.float32), tensor.name))
    onnx.save_model(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ExportError, match="Attention"):
        optimize_onnx(tmp_path / "model.onnx", tmp_path / "fused.onnx", config)
    assert not (tmp_path / "fused.onnx").exists()
