"""DynaBERT width arithmetic (numpy, no framework), pinned by the numpy reference BERT."""

from __future__ import annotations

import numpy as np
import pytest

from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import canonical_shapes, init_weights
from zoo_core.models.width import reorder, slice_to_width, width_config, width_dims
from zoo_core.testing import reference_logits, tiny_batch, tiny_config

CONFIG = tiny_config(initializer_range=0.2, num_attention_heads=4, intermediate_size=64)


def importance(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((2, 4)), rng.random((2, 64))


def test_width_dims_round_like_dynabert() -> None:
    base = tiny_config(num_attention_heads=12, hidden_size=48, intermediate_size=1536)
    assert [width_dims(base, w) for w in (1.0, 0.8333, 0.6667, 0.5)] == [
        (12, 1536),
        (10, 1280),
        (8, 1024),
        (6, 768),
    ]
    with pytest.raises(ModelError, match="width_mult must be in"):
        width_dims(base, 1.5)


def test_width_config_keeps_head_size_and_records_the_width() -> None:
    config = width_config(CONFIG, 0.5)
    assert (config.num_attention_heads, config.intermediate_size) == (2, 32)
    assert config.head_size == CONFIG.head_size and config.hidden_size == CONFIG.hidden_size
    assert config.extra["width_mult"] == 0.5
    saved = config.to_hf_dict()  # Hugging Face's way: the full head count, the rest pruned
    assert saved["num_attention_heads"] == 4 and saved["pruned_heads"]["0"] == [2, 3]
    assert BertConfig.from_hf_dict(saved) == config


def test_reorder_preserves_the_function() -> None:
    weights = init_weights(CONFIG, 1)
    batch = tiny_batch(seed=2, batch_size=5, max_len=12)
    reordered = reorder(weights, CONFIG, *importance(3))
    assert not np.array_equal(
        reordered["bert.encoder.layer.0.intermediate.dense.weight"],
        weights["bert.encoder.layer.0.intermediate.dense.weight"],
    )
    np.testing.assert_allclose(
        reference_logits(reordered, CONFIG, batch), reference_logits(weights, CONFIG, batch), atol=1e-9
    )


def test_reorder_puts_the_most_important_first() -> None:
    weights = init_weights(CONFIG, 1)
    heads, neurons = importance(3)
    reordered = reorder(weights, CONFIG, heads, neurons)
    top_head = int(np.argmax(heads[1]))
    size = CONFIG.head_size
    np.testing.assert_array_equal(
        reordered["bert.encoder.layer.1.attention.self.key.weight"][:size],
        weights["bert.encoder.layer.1.attention.self.key.weight"][top_head * size : (top_head + 1) * size],
    )
    top_neuron = int(np.argmax(neurons[0]))
    np.testing.assert_array_equal(
        reordered["bert.encoder.layer.0.output.dense.weight"][:, 0],
        weights["bert.encoder.layer.0.output.dense.weight"][:, top_neuron],
    )


def masked(width_mult: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Full-size weights with the pruned heads' values and the pruned neurons zeroed, and the originals."""
    weights = init_weights(CONFIG, 4)
    out = {k: v.copy() for k, v in weights.items()}
    heads, neurons = width_dims(CONFIG, width_mult)
    for i in range(CONFIG.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        out[p + "attention.self.value.weight"][heads * CONFIG.head_size :] = 0
        out[p + "attention.self.value.bias"][heads * CONFIG.head_size :] = 0
        out[p + "intermediate.dense.weight"][neurons:] = 0
        out[p + "intermediate.dense.bias"][neurons:] = 0
    return out, weights


@pytest.mark.parametrize("width_mult", [1.0, 0.75, 0.5, 0.25])
def test_slicing_to_a_width_equals_masking_at_that_width(width_mult: float) -> None:
    masked_weights, weights = masked(width_mult)
    config, sliced = slice_to_width(weights, CONFIG, width_mult)
    assert {k: v.shape for k, v in sliced.items()} == canonical_shapes(config)
    batch = tiny_batch(seed=6, batch_size=4, max_len=10)
    np.testing.assert_allclose(
        reference_logits(sliced, config, batch), reference_logits(masked_weights, CONFIG, batch), atol=1e-9
    )


def test_only_qkv_and_ffn_shrink() -> None:
    weights = init_weights(CONFIG, 0)
    _, sliced = slice_to_width(weights, CONFIG, 0.5)
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.LayerNorm.weight"):
        np.testing.assert_array_equal(sliced[name], weights[name])
    assert sliced["bert.encoder.layer.0.attention.output.dense.weight"].shape == (32, 16)
    assert sliced["bert.encoder.layer.0.attention.output.dense.bias"].shape == (32,)
    assert sliced["bert.encoder.layer.0.output.dense.weight"].shape == (32, 32)


def test_reorder_rejects_importance_of_the_wrong_shape() -> None:
    weights = init_weights(CONFIG, 0)
    with pytest.raises(ModelError, match="head importance has shape"):
        reorder(weights, CONFIG, np.zeros((2, 3)), np.zeros((2, 64)))
