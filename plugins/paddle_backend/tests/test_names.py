"""The canonical <-> PaddleNLP name-and-layout map, against zoo's model and PaddleNLP's own BERT."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from zoo_paddle.names import is_transposed, paddle_name

from zoo_core.backend import Backend
from zoo_core.models.weights import canonical_shapes, init_weights
from zoo_core.testing import tiny_batch, tiny_config

CONFIG = tiny_config(initializer_range=0.2)


def test_every_canonical_name_maps_onto_the_model_with_its_layout(backend: Backend) -> None:
    config = tiny_config(attention_head_size=6, labels=("a", "b", "c"))
    model = backend.build_model(config)
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    mapped = {}
    for name, shape in canonical_shapes(config).items():
        mapped[paddle_name(name)] = tuple(reversed(shape)) if is_transposed(name) else shape
    assert mapped == params  # one to one, every parameter covered, shapes in paddle's layout


@pytest.mark.parametrize(
    ("canonical", "paddle", "transposed"),
    [
        ("bert.embeddings.LayerNorm.bias", "bert.embeddings.layer_norm.bias", False),
        ("bert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight", False),
        (
            "bert.encoder.layer.11.attention.self.key.weight",
            "bert.encoder.layers.11.self_attn.k_proj.weight",
            True,
        ),
        (
            "bert.encoder.layer.0.attention.output.dense.bias",
            "bert.encoder.layers.0.self_attn.out_proj.bias",
            False,
        ),
        (
            "bert.encoder.layer.0.attention.output.LayerNorm.weight",
            "bert.encoder.layers.0.norm1.weight",
            False,
        ),
        ("bert.encoder.layer.1.intermediate.dense.weight", "bert.encoder.layers.1.linear1.weight", True),
        ("bert.encoder.layer.1.output.dense.weight", "bert.encoder.layers.1.linear2.weight", True),
        ("bert.encoder.layer.1.output.LayerNorm.bias", "bert.encoder.layers.1.norm2.bias", False),
        ("bert.pooler.dense.weight", "bert.pooler.dense.weight", True),
        ("classifier.weight", "classifier.weight", True),
    ],
)
def test_known_names(canonical: str, paddle: str, transposed: bool) -> None:
    assert paddle_name(canonical) == paddle
    assert is_transposed(canonical) is transposed


def test_unknown_name_is_refused() -> None:
    with pytest.raises(KeyError, match=r"cls\.predictions"):
        paddle_name("cls.predictions.bias")


def test_state_dict_loads_into_paddlenlp_bert_with_the_same_logits(backend: Backend) -> None:
    """Our parameter names and layouts are PaddleNLP's: its BERT takes our state dict unchanged."""
    from paddlenlp.transformers import BertConfig as NLPConfig
    from paddlenlp.transformers import BertForSequenceClassification as NLPBert

    model = backend.build_model(CONFIG)
    backend.load_weights(model, init_weights(CONFIG, seed=1))
    nlp_config = NLPConfig(
        vocab_size=CONFIG.vocab_size,
        hidden_size=CONFIG.hidden_size,
        num_hidden_layers=CONFIG.num_hidden_layers,
        num_attention_heads=CONFIG.num_attention_heads,
        intermediate_size=CONFIG.intermediate_size,
        max_position_embeddings=CONFIG.max_position_embeddings,
        type_vocab_size=CONFIG.type_vocab_size,
        layer_norm_eps=CONFIG.layer_norm_eps,
        num_labels=CONFIG.num_labels,
    )
    nlp = NLPBert(nlp_config)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in nlp.state_dict().items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    nlp.set_state_dict(state)
    nlp.eval()
    batch = tiny_batch(seed=2, batch_size=5, max_len=16)
    with paddle.no_grad():
        logits = nlp(
            paddle.to_tensor(batch.input_ids),
            token_type_ids=paddle.to_tensor(batch.token_type_ids),
            attention_mask=paddle.to_tensor(batch.attention_mask.astype(np.float32)),
        )
    np.testing.assert_allclose(logits.numpy(), backend.predict(model, batch), rtol=0, atol=1e-5)
