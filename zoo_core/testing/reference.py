"""A plain-numpy BERT forward pass that pins the math every backend must reproduce.

It reads canonical weights (``zoo_core.models.weights``) and computes in float64,
written from the BERT paper's equations rather than from any framework, so a
backend that agrees with it to ~1e-5 in float32 computes the same function as
Hugging Face's ``BertForSequenceClassification`` (``tests/test_reference.py``
checks the reference itself against ``transformers``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from zoo_core.backend import Batch
from zoo_core.dropout import DropoutMasks
from zoo_core.models.config import BertConfig

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: x * Phi(x), with Phi the standard normal CDF."""
    return np.asarray(0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation (``gelu_new`` / ``gelu_pytorch_tanh``)."""
    return np.asarray(0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


_ACTIVATIONS = {"gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "relu": _relu}


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased variance, as in BERT
    return np.asarray((x - mean) / np.sqrt(var + eps) * gamma + beta)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class ReferenceOutput:
    """What :func:`reference_forward` computes, all float64.

    ``hidden_states`` are the embedding output (after LayerNorm) then every layer's
    output: ``L + 1`` arrays ``[B, T, hidden]``.  ``scores`` are every layer's
    pre-softmax attention scores ``[B, heads, T, T]``, scaled by ``1/sqrt(head_size)``
    but without the padding mask, so padded keys hold finite values.
    """

    logits: np.ndarray
    hidden_states: list[np.ndarray]
    scores: list[np.ndarray]


def reference_forward(
    weights: Mapping[str, np.ndarray],
    config: BertConfig,
    batch: Batch,
    masks: DropoutMasks | None = None,
) -> ReferenceOutput:
    """Logits, hidden states and attention scores of BERT with a classification head.

    ``weights`` are in canonical names and layouts (Linear weights ``[out, in]``).
    Padded key positions (``attention_mask == 0``) get zero attention; padded query
    positions are computed but never reach the logits, which read position 0.  No
    dropout unless ``masks`` (:func:`zoo_core.dropout.dropout_masks`) are given: then
    every dropout site is multiplied by its scaled mask, as a training pass does.
    """
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    eps = config.layer_norm_eps
    act = _ACTIVATIONS[config.hidden_act]

    def linear(x: np.ndarray, prefix: str) -> np.ndarray:
        return np.asarray(x @ w[prefix + ".weight"].T + w[prefix + ".bias"])

    def layer_norm(x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, w[prefix + ".weight"], w[prefix + ".bias"], eps)

    ids = np.asarray(batch.input_ids)
    batch_size, length = ids.shape
    heads, head_size = config.num_attention_heads, config.head_size

    x = (
        w["bert.embeddings.word_embeddings.weight"][ids]
        + w["bert.embeddings.position_embeddings.weight"][np.arange(length)][None]
        + w["bert.embeddings.token_type_embeddings.weight"][np.asarray(batch.token_type_ids)]
    )
    sites = iter(masks.scaled()) if masks is not None else None

    def drop(t: np.ndarray) -> np.ndarray:
        """``t`` times the next site's scaled mask (identity without masks)."""
        return t if sites is None else t * next(sites)[tuple(slice(0, n) for n in t.shape)]

    x = drop(layer_norm(x, "bert.embeddings.LayerNorm"))
    hidden_states, all_scores = [x], []

    keep = np.asarray(batch.attention_mask)[:, None, None, :] > 0  # [B, 1, 1, T] over keys

    def split_heads(t: np.ndarray) -> np.ndarray:  # [B, T, H*D] -> [B, H, T, D]
        return t.reshape(batch_size, length, heads, head_size).transpose(0, 2, 1, 3)

    for i in range(config.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        q = split_heads(linear(x, p + "attention.self.query"))
        k = split_heads(linear(x, p + "attention.self.key"))
        v = split_heads(linear(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_size)
        probs = drop(_softmax(np.where(keep, scores, -np.inf)))
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch_size, length, heads * head_size)
        attended = drop(linear(context, p + "attention.output.dense"))
        x = layer_norm(x + attended, p + "attention.output.LayerNorm")
        hidden = act(linear(x, p + "intermediate.dense"))
        x = layer_norm(x + drop(linear(hidden, p + "output.dense")), p + "output.LayerNorm")
        hidden_states.append(x)
        all_scores.append(scores)

    pooled = drop(np.tanh(linear(x[:, 0], "bert.pooler.dense")))
    return ReferenceOutput(linear(pooled, "classifier"), hidden_states, all_scores)


def reference_logits(weights: Mapping[str, np.ndarray], config: BertConfig, batch: Batch) -> np.ndarray:
    """Logits ``[B, num_labels]`` (float64) of BERT with a classification head, no dropout.

    The logits of :func:`reference_forward`, which documents the conventions.
    """
    return reference_forward(weights, config, batch).logits
