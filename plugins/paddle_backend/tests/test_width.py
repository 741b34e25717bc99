"""DynaBERT width on paddle beyond the conformance suite: the OFA supernet and width-sliced exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest
from zoo_paddle.width import WidthSupernet, width_net_config

from zoo_core.backend import Backend
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights
from zoo_core.models.width import slice_to_width
from zoo_core.runners.export import onnx_predictor
from zoo_core.testing import pad_batch, tiny_batch, tiny_config
from zoo_core.testing.reference import reference_forward

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
#: heads narrower than hidden / heads (32 / 4 = 8), as width-pruned students have
NARROW_HEADS = {"attention_head_size": 6}


def _loaded(backend: Backend, config: BertConfig, seed: int = 0) -> tuple[Any, dict[str, np.ndarray]]:
    model = backend.build_model(config)
    weights = init_weights(config, seed=seed)
    backend.load_weights(model, weights)
    return model, weights


def test_net_config_rounds_heads_as_the_core_does() -> None:
    config = tiny_config(hidden_size=48, num_attention_heads=12, intermediate_size=60)
    paths = [f"bert.encoder.layers.{i}.{name}" for i in range(2) for name in ("linear1", "linear2")]
    paths += [f"bert.encoder.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qkvo"]
    net = width_net_config(config, [*paths, "classifier"], 0.8333)
    # round(0.8333 * 12) = 10 heads of 4 units; paddleslim's int(0.8333 * 48) = 39 would split a head
    assert net["bert.encoder.layers.1.self_attn.k_proj"] == {"channel": 40}
    assert net["bert.encoder.layers.0.linear1"] == {"channel": 50}
    assert net["bert.encoder.layers.0.linear2"] == {} and net["classifier"] == {}


@pytest.mark.parametrize("width", [1.0, 0.75, 0.5, 0.25])
@pytest.mark.parametrize("heads", [{}, NARROW_HEADS], ids=["even-heads", "narrow-heads"])
def test_supernet_at_a_width_is_the_sliced_model(
    backend: Backend, width: float, heads: dict[str, int]
) -> None:
    config = tiny_config(**NO_DROPOUT, **heads)
    model, weights = _loaded(backend, config)
    batch = tiny_batch(seed=3, batch_size=5)
    supernet = WidthSupernet(model)
    supernet.ofa.eval()
    with paddle.no_grad():
        inputs = {
            "input_ids": paddle.to_tensor(batch.input_ids),
            "token_type_ids": paddle.to_tensor(batch.token_type_ids),
            "attention_mask": paddle.to_tensor(batch.attention_mask),
        }
        got = supernet(width, **inputs, output_hidden_states=True)
    sliced_config, sliced = slice_to_width(weights, config, width)
    want = reference_forward(sliced, sliced_config, batch)
    np.testing.assert_allclose(got.logits.numpy(), want.logits, rtol=1e-4, atol=1e-5)
    mask = batch.attention_mask.astype(bool)
    for have, expected in zip(got.hidden_states, want.hidden_states, strict=True):
        np.testing.assert_allclose(have.numpy()[mask], expected[mask], rtol=1e-4, atol=1e-5)
    # the model itself is untouched: still the full model, same parameters
    np.testing.assert_allclose(
        backend.predict(model, batch), reference_forward(weights, config, batch).logits, atol=1e-5
    )
    assert {id(p) for p in supernet.ofa.parameters()} == {id(p) for p in model.parameters()}


BATCHES = {
    "example": tiny_batch(seed=0, batch_size=4, max_len=12),
    "other-shape": pad_batch(tiny_batch(seed=1, batch_size=7, max_len=17), 20),
    "single": tiny_batch(seed=2, batch_size=1, max_len=9),
}


@pytest.mark.parametrize("heads", [{}, NARROW_HEADS], ids=["even-heads", "narrow-heads"])
def test_width_sliced_model_exports_with_its_own_head_count(
    backend: Backend, tmp_path: Path, heads: dict[str, int]
) -> None:
    """PaddleNLP#1466: an OFA sub-model exported with the full head count gives constant logits."""
    config = tiny_config(initializer_range=0.2, **heads)  # logits far enough apart to tell
    sliced_config, sliced = slice_to_width(init_weights(config, seed=0), config, 0.5)
    assert sliced_config.num_attention_heads == 2 and sliced_config.head_size == config.head_size
    model = backend.build_model(sliced_config)
    backend.load_weights(model, sliced)
    example = BATCHES["example"]
    predictors = {
        "onnx": onnx_predictor(backend.export(model, tmp_path / "onnx", "onnx", example)),
        "native": backend.load_native(backend.export(model, tmp_path / "native", "native", example)),
    }
    for which, batch in BATCHES.items():
        want = reference_forward(sliced, sliced_config, batch).logits
        np.testing.assert_allclose(backend.predict(model, batch), want, rtol=1e-4, atol=1e-5, err_msg=which)
        for fmt, predict in predictors.items():
            got = predict(batch)
            assert got.shape == (len(batch), 2), (fmt, which)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{fmt} {which}")
    assert np.ptp(predictors["onnx"](BATCHES["other-shape"]), axis=0).min() > 1e-2  # not constant
