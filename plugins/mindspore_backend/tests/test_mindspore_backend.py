"""MindSpore-specific tests: options, devices, the plugin's imports, the name map, padding, modes, export."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from zoo_mindspore.model import BertForSequenceClassification, dropout_shapes, erf_polynomial
from zoo_mindspore.names import to_canonical, to_mindspore
from zoo_mindspore.plugin import validate_options
from zoo_mindspore.train import pad_to, padded_length

from zoo_core.backend import Backend, TrainSpec
from zoo_core.errors import DeviceUnavailableError, RecipeError
from zoo_core.models.weights import canonical_shapes, init_weights
from zoo_core.plugins import create_backend
from zoo_core.runners.export import onnx_predictor
from zoo_core.testing import tiny_batch, tiny_config

# ---- options, devices, imports ---------------------------------------------------------


def test_options_defaults() -> None:
    assert validate_options({}) == {"mode": "graph", "threads": None, "optimizer": "adamw"}
    assert validate_options({"mode": "pynative", "threads": 2, "optimizer": "adamweightdecay"}) == {
        "mode": "pynative",
        "threads": 2,
        "optimizer": "adamweightdecay",
    }


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"thread": 2}, "backend_options.mindspore.thread: unknown option"),
        ({"threads": 0}, "backend_options.mindspore.threads: expected a positive integer"),
        ({"threads": True}, "backend_options.mindspore.threads"),
        ({"mode": "GRAPH"}, "backend_options.mindspore.mode: expected 'graph'"),
        ({"optimizer": "adam"}, "backend_options.mindspore.optimizer: expected 'adamw'"),
    ],
)
def test_bad_options_are_recipe_errors(options: dict[str, object], where: str) -> None:
    with pytest.raises(RecipeError) as info:
        create_backend("mindspore", "cpu", options)
    assert str(info.value).startswith(where)
    assert "\n" not in str(info.value)


def test_every_bad_option_is_reported() -> None:
    with pytest.raises(RecipeError) as info:
        validate_options({"a": 1, "threads": -1, "mode": "eager"})
    assert len(info.value.problems) == 3


@pytest.mark.parametrize(("device", "target"), [("gpu", "GPU"), ("ascend", "Ascend")])
def test_missing_device_is_device_unavailable(device: str, target: str) -> None:
    if getattr(ms.device_context, device).is_available():
        pytest.skip(f"this machine has a {target} device")
    with pytest.raises(
        DeviceUnavailableError, match=rf"^device '{device}' requested but MindSpore .* no {target}"
    ):
        create_backend("mindspore", device)  # type: ignore[arg-type]


def test_plugin_and_listing_do_not_import_mindspore() -> None:
    code = (
        "import sys, zoo_mindspore.plugin\n"
        "from zoo_core.plugins import list_backends\n"
        "assert 'mindspore' in [b.spec.name for b in list_backends()]\n"
        "assert 'mindspore' not in sys.modules, 'mindspore was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


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


# ---- modes and optimizers -------------------------------------------------------------------


def _trained(options: dict[str, object], steps: int = 2) -> tuple[list[float], dict[str, np.ndarray]]:
    """Losses and weights after ``steps`` seeded steps (dropout on) with ``options``."""
    backend = create_backend("mindspore", "cpu", options)
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    trainer = backend.make_trainer(model, TrainSpec("classification", seed=3))
    losses = [trainer.step(tiny_batch(seed=s, batch_size=8), lr=1e-3)["loss"] for s in range(steps)]
    return losses, backend.dump_weights(model)


def test_graph_and_pynative_steps_agree() -> None:
    """The compiled step computes what the eager one does, dropout masks included."""
    graph_losses, graph_weights = _trained({"mode": "graph"})
    eager_losses, eager_weights = _trained({"mode": "pynative"})
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
        backend.make_trainer(model, spec).step(tiny_batch(), lr=lr)
        after = backend.dump_weights(model)["classifier.weight"]
        moves[optimizer] = float(np.median(np.abs(after - before["classifier.weight"])))
    assert moves["adamw"] == pytest.approx(lr, rel=0.05)
    assert moves["adamweightdecay"] == pytest.approx(lr * 0.1 / math.sqrt(0.001), rel=0.05)


# ---- export -------------------------------------------------------------------------------


def test_onnx_export_has_the_example_shape_only(backend: Backend, tmp_path: Path) -> None:
    """MindSpore cannot export a dynamic sequence axis: the file names its inputs and fixes its shape."""
    config = tiny_config()
    model = backend.build_model(config)
    backend.load_weights(model, init_weights(config, 0))
    example = tiny_batch(seed=7, batch_size=3, max_len=12)
    path = backend.export(model, tmp_path, "onnx", example)
    predict = onnx_predictor(path)
    np.testing.assert_allclose(predict(example), backend.predict(model, example), rtol=0, atol=1e-5)
    with pytest.raises(Exception, match="invalid dimensions"):
        predict(tiny_batch(seed=8, batch_size=3, max_len=14))
