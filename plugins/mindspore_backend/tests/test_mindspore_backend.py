"""MindSpore-specific tests: logs, devices, the name map, padding, modes, export.

Options in general and the plugin's cheap import are the conformance suite's
(:mod:`zoo_core.testing.conformance.core`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import mindspore as ms
import numpy as np
import onnx
import pytest
from mindspore import Tensor
from zoo_mindspore.env import LOG_LEVEL_VARIABLE, quiet_mindspore_logs
from zoo_mindspore.export import verify_onnx
from zoo_mindspore.model import (
    BertForSequenceClassification,
    dropout_inputs,
    dropout_shapes,
    erf_polynomial,
    pad_to,
    padded_length,
)
from zoo_mindspore.names import to_canonical, to_mindspore
from zoo_mindspore.onnx_graph import make_dynamic, marker_shape
from zoo_mindspore.optimizer import Optimizer

from zoo_core.backend import Backend, TrainSpec, WidthSpec
from zoo_core.dropout import dropout_masks
from zoo_core.errors import DeviceUnavailableError, ExportError
from zoo_core.models.weights import canonical_shapes, init_weights
from zoo_core.plugins import create_backend
from zoo_core.runners.export import onnx_predictor
from zoo_core.testing import tiny_batch, tiny_config
from zoo_core.trainers import train_step

# ---- logs and devices ---------------------------------------------------------------


def test_mindspore_logs_are_quiet_unless_the_user_chose_a_level(monkeypatch: pytest.MonkeyPatch) -> None:
    environ: dict[str, str] = {}
    assert quiet_mindspore_logs(environ) and environ == {"GLOG_v": "3"}
    chosen = {"GLOG_v": "1"}
    assert not quiet_mindspore_logs(chosen) and chosen == {"GLOG_v": "1"}
    monkeypatch.delenv("GLOG_v", raising=False)
    create_backend("mindspore", "cpu", {})
    assert os.environ.get(LOG_LEVEL_VARIABLE) == "3"  # the factory quiets MindSpore before importing it


@pytest.mark.parametrize(("device", "target"), [("gpu", "GPU"), ("ascend", "Ascend")])
def test_missing_device_is_device_unavailable(device: str, target: str) -> None:
    if getattr(ms.device_context, device).is_available():
        pytest.skip(f"this machine has a {target} device")
    with pytest.raises(
        DeviceUnavailableError, match=rf"^device '{device}' requested but MindSpore .* no {target}"
    ):
        create_backend("mindspore", device)  # type: ignore[arg-type]


# ---- the name map ----------------------------------------------------------------------


def test_name_map_round_trips_every_canonical_name() -> None:
    config = tiny_config(attention_head_size=5)
    for name in canonical_shapes(config):
        assert to_canonical(to_mindspore(name)) == name


def test_name_map_examples() -> None:
    assert to_mindspore("bert.embeddings.word_embeddings.weight") == (
        "bert.embeddings.word_embeddings.embedding_table"
    )
    assert to_mindspore("bert.encoder.layer.3.output.LayerNorm.weight") == (
        "bert.encoder.layer.3.output.LayerNorm.gamma"
    )
    assert to_mindspore("bert.embeddings.LayerNorm.bias") == "bert.embeddings.LayerNorm.beta"
    assert to_mindspore("classifier.weight") == "classifier.weight"
    assert to_canonical("bert.encoder.layer.0.attention.output.LayerNorm.beta") == (
        "bert.encoder.layer.0.attention.output.LayerNorm.bias"
    )


def test_cell_parameters_are_the_mapped_canonical_names() -> None:
    config = tiny_config(attention_head_size=5)
    model = BertForSequenceClassification(config)
    ours = {name: tuple(p.shape) for name, p in model.parameters_and_names()}
    assert ours == {to_mindspore(name): shape for name, shape in canonical_shapes(config).items()}


# ---- numerics that only this backend has ----------------------------------------------------


def test_erf_polynomial_is_close_to_erf() -> None:
    x = np.linspace(-6, 6, 2001, dtype=np.float32)
    got = erf_polynomial(Tensor(x)).asnumpy()
    expected = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(got - expected).max() < 2e-6  # the formula's 1.5e-7 plus float32 rounding


@pytest.mark.parametrize(
    ("length", "limit", "padded"), [(1, 64, 16), (16, 64, 16), (17, 64, 32), (60, 62, 62)]
)
def test_padded_length(length: int, limit: int, padded: int) -> None:
    assert padded_length(length, limit) == padded


def test_padding_to_the_multiple_keeps_logits(backend: Backend) -> None:
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    batch = tiny_batch(max_len=11)
    np.testing.assert_allclose(
        backend.predict(model, pad_to(batch, 16)), backend.predict(model, batch), rtol=0, atol=1e-6
    )


def test_dropout_sites() -> None:
    config = tiny_config(num_hidden_layers=3)
    shapes = dropout_shapes(config, 2, 5)
    assert len(shapes) == 2 + 3 * 3
    assert shapes[1] == (2, config.num_attention_heads, 5, 5) and shapes[-1] == (2, config.hidden_size)


def test_dropout_inputs_are_the_cores_masks_at_the_padded_length() -> None:
    """The step's masks: the core's, scaled, in the model's order, as wide as the padded batch."""
    config = tiny_config(num_hidden_layers=3, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2)
    batch = replace(tiny_batch(seed=1, batch_size=3, max_len=11), step=5)
    padded = pad_to(batch, 16)
    assert padded.step == 5 and np.array_equal(padded.indices, batch.indices)
    keep = dropout_inputs(config, padded, seed=7, stream=1)
    assert keep is not None
    assert [tuple(t.shape) for t in keep] == dropout_shapes(config, 3, 16)
    core = dropout_masks(config, batch, 7, stream=1, length=16)
    assert core is not None
    for got, want in zip(keep, core.scaled(), strict=True):
        np.testing.assert_array_equal(got.asnumpy(), want)
    assert (
        dropout_inputs(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), padded, 7)
        is None
    )


# ---- modes and optimizers -------------------------------------------------------------------


def _trained(options: dict[str, object], steps: int = 2) -> tuple[list[float], dict[str, np.ndarray]]:
    """Losses and weights after ``steps`` seeded steps (dropout on) with ``options``."""
    backend = create_backend("mindspore", "cpu", options)
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    trainer = backend.make_trainer(model, TrainSpec("classification", seed=3))
    # a new learning rate every step: a compiled step must see each (a Parameter written per step)
    losses = [
        train_step(trainer, tiny_batch(seed=s, batch_size=8), lr=1e-3 * (s + 1))["loss"] for s in range(steps)
    ]
    return losses, backend.dump_weights(model)


def test_graph_and_pynative_steps_agree() -> None:
    """The compiled step computes what the eager one does, dropout masks and lr schedule included."""
    graph_losses, graph_weights = _trained({"mode": "graph"}, steps=3)
    eager_losses, eager_weights = _trained({"mode": "pynative"}, steps=3)
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-5)
    for name, value in eager_weights.items():
        np.testing.assert_allclose(graph_weights[name], value, atol=1e-5, err_msg=name)


def test_adamweightdecay_has_no_bias_correction() -> None:
    """MindSpore's AdamWeightDecay moves the first step by about 3.16 lr, AdamW by about lr."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    lr = 1e-4
    moves = {}
    for optimizer in ("adamw", "adamweightdecay"):
        backend = create_backend("mindspore", "cpu", {"mode": "pynative", "optimizer": optimizer})
        model = backend.build_model(config)
        before = init_weights(config, 0)
        backend.load_weights(model, before)
        spec = TrainSpec("classification", weight_decay=0.0, max_grad_norm=None)
        train_step(backend.make_trainer(model, spec), tiny_batch(), lr=lr)
        after = backend.dump_weights(model)["classifier.weight"]
        moves[optimizer] = float(np.median(np.abs(after - before["classifier.weight"])))
    assert moves["adamw"] == pytest.approx(lr, rel=0.05)
    assert moves["adamweightdecay"] == pytest.approx(lr * 0.1 / math.sqrt(0.001), rel=0.05)


def test_adamw_is_torchs_update() -> None:
    """Three steps of :class:`AdamW` against torch.optim.AdamW's formula in numpy (decay and no decay)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(0)
    start = {name: rng.normal(size=(3, 4)).astype(np.float32) for name in ("dense.weight", "dense.bias")}
    params = [ms.Parameter(Tensor(value.copy()), name=name) for name, value in start.items()]
    spec = TrainSpec("classification", weight_decay=0.1, adam_betas=(0.8, 0.99), adam_eps=1e-6)
    optimizer = Optimizer([(p.name, p) for p in params], spec, "adamw")
    want = {name: value.astype(np.float64) for name, value in start.items()}
    moments = {name: (np.zeros((3, 4)), np.zeros((3, 4))) for name in start}
    for step, lr in enumerate((1e-2, 5e-3, 2e-3), 1):
        grads = {name: rng.normal(size=(3, 4)).astype(np.float32) for name in start}
        optimizer.set_lr(lr)
        optimizer.cell(tuple(Tensor(grads[p.name]) for p in optimizer.params))
        for name, g in grads.items():
            m, v = moments[name]
            if name.endswith("weight"):
                want[name] = want[name] * (1 - lr * 0.1)
            m, v = 0.8 * m + 0.2 * g, 0.99 * v + 0.01 * g.astype(np.float64) ** 2
            moments[name] = (m, v)
            denom = np.sqrt(v) / np.sqrt(1 - 0.99**step) + 1e-6
            want[name] = want[name] - lr / (1 - 0.8**step) * m / denom
    for p in params:
        np.testing.assert_allclose(p.asnumpy(), want[p.name], rtol=0, atol=1e-6, err_msg=p.name)


# ---- export -------------------------------------------------------------------------------


def test_onnx_export_has_dynamic_axes(backend: Backend, tmp_path: Path) -> None:
    """The traced static graph is rewritten: symbolic axes, any shape runs, no leftover files."""
    config = tiny_config(attention_head_size=5, labels=("a", "b", "c"))
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    example = tiny_batch(seed=7, batch_size=3, max_len=12)
    path = backend.export(model, tmp_path, "onnx", example)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    graph = onnx.load(str(path)).graph
    for graph_input in graph.input:
        dims = [d.dim_param for d in graph_input.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"], graph_input.name
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    predict = onnx_predictor(path)
    for batch in (tiny_batch(seed=8, batch_size=2, max_len=64), tiny_batch(seed=9, batch_size=9, max_len=5)):
        np.testing.assert_allclose(predict(batch), backend.predict(model, batch), rtol=0, atol=1e-5)


def test_marker_shape_avoids_every_model_size() -> None:
    config = tiny_config(num_attention_heads=3, attention_head_size=4, intermediate_size=5, labels=("a",) * 6)
    batch, length = marker_shape(config)
    assert (batch, length) == (8, 7)  # 3, 4, 5, 6 and 12 are taken
    with pytest.raises(ExportError, match="max_position_embeddings=4"):
        marker_shape(tiny_config(max_position_embeddings=4, labels=("a", "b", "c")))  # 3 taken, 5 > 4


def test_make_dynamic_refuses_a_graph_without_marker_shapes() -> None:
    x = onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, [2, 3])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.INT64, [2, 3])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input_ids"], ["logits"])], "g", [x], [y]
    )
    with pytest.raises(ExportError, match="cannot make it dynamic"):
        make_dynamic(onnx.helper.make_model(graph), 2, 3)


def test_onnx_export_is_verified(backend: Backend, tmp_path: Path) -> None:
    """A file that does not reproduce the model is an ExportError, not a silently wrong file."""
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    example = tiny_batch(seed=7)
    path = backend.export(model, tmp_path, "onnx", example)
    other = backend.build_model(config)
    backend.load_weights(other, init_weights(config, 1))
    with pytest.raises(ExportError, match="differs from the MindSpore model"):
        verify_onnx(path, other, example)


# ---- DynaBERT width -----------------------------------------------------------------------


def _width_trained(mode: str) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """Three seeded width steps (dropout on, widths 1 and 0.5, a new lr each) in ``mode``."""
    backend = create_backend("mindspore", "cpu", {"mode": mode})
    config = tiny_config(num_hidden_layers=1)
    teacher, student = backend.build_model(config), backend.build_model(config)
    backend.load_weights(teacher, init_weights(config, 1))
    backend.load_weights(student, init_weights(config, 2))
    spec = WidthSpec(TrainSpec("classification", seed=3), widths=(1.0, 0.5))
    trainer = backend.make_width_trainer(student, teacher, spec)
    results = [
        train_step(trainer, tiny_batch(seed=s, batch_size=4, labels=None), lr=1e-3 * (s + 1))
        for s in range(3)
    ]
    return results, backend.dump_weights(student)


def test_width_graph_and_pynative_steps_agree() -> None:
    """The compiled width step (one graph over every width, a dropout draw each) computes the eager one."""
    graph_results, graph_weights = _width_trained("graph")
    eager_results, eager_weights = _width_trained("pynative")
    assert set(graph_results[0]) == {"loss", "grad_norm", "logits@1", "hidden@1", "logits@0.5", "hidden@0.5"}
    for graph, eager in zip(graph_results, eager_results, strict=True):
        for name, value in eager.items():
            assert graph[name] == pytest.approx(value, rel=1e-5), name
    assert graph_results[0]["hidden@0.5"] != graph_results[0]["hidden@1"]
    for name, value in eager_weights.items():
        np.testing.assert_allclose(graph_weights[name], value, atol=1e-5, err_msg=name)
