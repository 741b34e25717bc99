"""BERT for sequence classification in plain torch (no ``transformers`` at runtime).

The module tree mirrors Hugging Face's ``BertForSequenceClassification``, so
``state_dict()`` keys are exactly zoo's canonical names
(``zoo_core.models.weights.canonical_shapes``) in the same layouts, and loading or
dumping weights is a direct copy.  Unlike Hugging Face, the per-head width comes
from ``config.head_size`` and may differ from ``hidden_size / num_attention_heads``
(width-pruned models need that).

Dropout: the model draws no random numbers.  A training forward pass takes the core's
keep-masks (``dropout=``, see :func:`training_inputs`), one scaled float tensor per
dropout site; without them nothing is dropped, whatever the module's mode.

Width (DynaBERT): every layer can run on its first heads and FFN neurons only —
``BertSelfAttention.active_heads`` and ``BertIntermediate.active_neurons`` (None: all),
set by :func:`zoo_torch.width.set_width`.  The layers after them read only as many
input columns as they are given, so one set of full-size weights serves every width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_core.backend import Batch
from zoo_core.dropout import dropout_masks
from zoo_core.models.config import BertConfig

_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def drop(x: Tensor, mask: Tensor | None) -> Tensor:
    """Dropout as the core draws it: ``x`` times its scaled keep-mask (identity for None).

    The masks come from :func:`zoo_core.dropout.dropout_masks` (see :func:`training_inputs`),
    so every backend, process count and padding drops the same elements.
    """
    return x if mask is None else x * mask


class LayerDropout(NamedTuple):
    """One layer's scaled keep-masks (:func:`drop`)."""

    attention_probs: Tensor
    attention_output: Tensor
    ffn_output: Tensor


class ModelOutput(NamedTuple):
    """What :class:`BertForSequenceClassification` returns.

    ``hidden_states`` (embedding output, then each layer's output: ``L + 1`` tensors
    ``[B, T, hidden]``) and ``attentions`` (each layer's pre-softmax scores
    ``[B, heads, T, T]``, already scaled by ``1/sqrt(head_size)`` but *before* the
    padding mask is added, so padded keys hold finite values the caller must mask)
    are None unless asked for.
    """

    logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, dropout: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return drop(self.LayerNorm(x), dropout)


def linear_rows(layer: nn.Linear, x: Tensor, rows: int | None) -> Tensor:
    """``layer(x)`` restricted to its first ``rows`` output units (all when None)."""
    if rows is None or rows == layer.out_features:
        return layer(x)
    return F.linear(x, layer.weight[:rows], layer.bias[:rows])


def linear_inputs(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` for an ``x`` that has only the first ``x.shape[-1]`` input features."""
    if x.shape[-1] == layer.in_features:
        return layer(x)
    return F.linear(x, layer.weight[:, : x.shape[-1]], layer.bias)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with ``config.head_size`` wide heads.

    ``active_heads`` (None: all) keeps the first heads only; ``head_gates`` (None: no
    gating), a ``[heads]`` tensor, scales each head's context vectors (importance).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.active_heads: int | None = None
        self.head_gates: Tensor | None = None
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        width = self.num_heads * self.head_size
        self.query = nn.Linear(config.hidden_size, width)
        self.key = nn.Linear(config.hidden_size, width)
        self.value = nn.Linear(config.hidden_size, width)

    def _heads(self, x: Tensor) -> Tensor:
        """``[B, T, H*D]`` -> ``[B, H, T, D]``."""
        return x.unflatten(-1, (-1, self.head_size)).transpose(1, 2)

    def _context(self, context: Tensor) -> Tensor:
        """``[B, H, T, D]`` -> ``[B, T, H*D]``, each head scaled by its gate if any."""
        if self.head_gates is not None:
            context = context * self.head_gates[: context.shape[1], None, None]
        return context.transpose(1, 2).flatten(2)

    def forward(
        self, x: Tensor, mask: Tensor | None, want_scores: bool, dropout: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Context ``[B, T, H*D]`` and, if ``want_scores``, the pre-softmax scores.

        ``mask`` is additive, ``[B, 1, 1, T]``: 0 for real keys, a large negative
        number for padding; None when nothing is padded.  ``dropout`` is the attention
        probabilities' scaled keep-mask ``[B, heads, T, T]`` of the full model (a
        narrower width uses its first heads), None for no dropout.
        """
        rows = None if self.active_heads is None else self.active_heads * self.head_size
        q, k, v = (self._heads(linear_rows(proj, x, rows)) for proj in (self.query, self.key, self.value))
        if dropout is None and not want_scores:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self._context(context), None
        scores = (q * self.head_size**-0.5) @ k.transpose(-1, -2)
        probs = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        if dropout is not None:
            probs = probs * dropout[:, : q.shape[1]]
        return self._context(probs @ v), scores if want_scores else None


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.num_attention_heads * config.head_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: Tensor, residual: Tensor, dropout: Tensor | None = None) -> Tensor:
        return self.LayerNorm(drop(linear_inputs(self.dense, context), dropout) + residual)


class BertAttention(nn.Module):
    """Self-attention plus its output block (Hugging Face names the inner one ``self``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, x: Tensor, mask: Tensor | None, want_scores: bool, dropout: LayerDropout | None = None
    ) -> tuple[Tensor, Tensor | None]:
        context, scores = self.self(x, mask, want_scores, None if dropout is None else dropout[0])
        return self.output(context, x, None if dropout is None else dropout[1]), scores


class BertIntermediate(nn.Module):
    """The feed-forward block's first projection and activation (``active_neurons``: the first only)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.active_neurons: int | None = None
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(linear_rows(self.dense, x, self.active_neurons))


class BertFFNOutput(nn.Module):
    """The feed-forward block's second projection, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor, residual: Tensor, dropout: Tensor | None = None) -> Tensor:
        return self.LayerNorm(drop(linear_inputs(self.dense, hidden), dropout) + residual)


class BertLayer(nn.Module):
    """One transformer encoder layer (post-LayerNorm, as in BERT)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertFFNOutput(config)

    def forward(
        self, x: Tensor, mask: Tensor | None, want_scores: bool, dropout: LayerDropout | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The layer's output and, if ``want_scores``, its attention scores.

        ``dropout``: the layer's three scaled keep-masks (attention probabilities,
        attention output, feed-forward output), None for no dropout.
        """
        x, scores = self.attention(x, mask, want_scores, dropout)
        return self.output(self.intermediate(x), x, None if dropout is None else dropout[2]), scores


class BertEncoder(nn.Module):
    """The stack of layers (a module of its own for the ``encoder.layer.N`` names).

    Like :class:`BertModel`, it only holds parameters: the loop over layers lives in
    :meth:`BertForSequenceClassification.forward`.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def layers(self) -> list[BertLayer]:
        """The layers, typed (a ``ModuleList`` yields plain modules)."""
        return [cast(BertLayer, layer) for layer in self.layer]


class BertPooler(nn.Module):
    """``tanh(dense(h[:, 0]))``: the [CLS] position's pooled representation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    """Embeddings, encoder and pooler (the ``bert.`` prefix of the canonical names); no forward."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)


class BertForSequenceClassification(nn.Module):
    """BERT with a classification (or, with one label, regression) head."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        dropout: Sequence[Tensor] | None = None,
    ) -> ModelOutput:
        """Logits ``[B, num_labels]``, plus hidden states and attention scores if asked.

        ``attention_mask`` is ``[B, T]`` with 1 for real tokens and 0 for padding;
        None means no padding.  Asking for attentions, or dropping, switches every
        layer from ``scaled_dot_product_attention`` to the explicit computation.
        ``dropout`` holds the ``2 + 3 L`` scaled keep-masks of
        :meth:`zoo_core.dropout.DropoutMasks.scaled`, in that order; None: no dropout.
        """
        mask = None
        if attention_mask is not None:
            # the word embeddings' dtype (the model's: fp32, or bf16 when cast), not the classifier's,
            # whose ``weight`` is a method once torch.ao has quantized it (zoo_torch.export)
            dtype = self.bert.embeddings.word_embeddings.weight.dtype
            mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

        x = self.bert.embeddings(input_ids, token_type_ids, None if dropout is None else dropout[0])
        hidden_states: list[Tensor] | None = [x] if output_hidden_states else None
        attentions: list[Tensor] | None = [] if output_attentions else None
        for i, layer in enumerate(self.bert.encoder.layer):
            layer_dropout = None if dropout is None else LayerDropout(*dropout[1 + 3 * i : 4 + 3 * i])
            x, scores = layer(x, mask, output_attentions, layer_dropout)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None and scores is not None:
                attentions.append(scores)

        logits = self.classifier(drop(self.bert.pooler(x), None if dropout is None else dropout[-1]))
        return ModelOutput(
            logits,
            tuple(hidden_states) if hidden_states is not None else None,
            tuple(attentions) if attentions is not None else None,
        )


def batch_inputs(batch: Batch, device: torch.device) -> dict[str, Tensor | None]:
    """The model's keyword inputs for ``batch`` on ``device``.

    The mask is dropped (None) when the batch holds no padding, which lets
    ``scaled_dot_product_attention`` take its mask-free kernel; that check runs on
    the numpy array, so it costs no device synchronisation.
    """
    mask = np.asarray(batch.attention_mask)
    return {
        "input_ids": torch.from_numpy(np.asarray(batch.input_ids, np.int64)).to(device),
        "token_type_ids": torch.from_numpy(np.asarray(batch.token_type_ids, np.int64)).to(device),
        "attention_mask": None if mask.all() else torch.from_numpy(np.asarray(mask, np.int64)).to(device),
    }


def training_inputs(
    batch: Batch, device: torch.device, config: BertConfig, seed: int, stream: int = 0
) -> dict[str, Any]:
    """:func:`batch_inputs` plus the core's dropout masks of ``batch`` (``dropout=``).

    ``seed`` is the run's, ``stream`` the forward pass's within its step (DynaBERT's
    ``k``-th width: ``k``); see :func:`zoo_core.dropout.dropout_masks`.
    """
    inputs: dict[str, Any] = batch_inputs(batch, device)
    masks = dropout_masks(config, batch, seed, stream)
    if masks is not None:
        inputs["dropout"] = [torch.from_numpy(m).to(device) for m in masks.scaled()]
    return inputs


def maybe_compile(model: nn.Module, compile: bool) -> Callable[..., Any]:
    """``model``'s forward, through ``torch.compile(dynamic=True)`` when ``compile``."""
    return torch.compile(model, dynamic=True) if compile else model


#: ``train.precision`` -> the dtype torch's autocast computes in (fp32: no autocast)
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """``torch.autocast`` for ``precision`` on ``device``'s type (disabled for fp32).

    torch's own op lists decide what runs in low precision (matmuls and linear layers);
    the weights stay float32 and so do the gradients the optimizer sees.
    """
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
