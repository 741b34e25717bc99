"""BERT for sequence classification as MindSpore ``nn.Cell``\\ s (no mindnlp/mindformers).

The cell tree mirrors Hugging Face's ``BertForSequenceClassification`` (``bert.embeddings``,
``bert.encoder.layer.N.attention.self.query`` ...), so a MindSpore parameter name differs
from zoo's canonical name only in the last component: MindSpore's ``nn.Embedding``
calls its table ``embedding_table`` and ``nn.LayerNorm`` its scale and shift ``gamma``
and ``beta`` (see :mod:`zoo_mindspore.names`).  ``nn.Dense`` keeps its weight ``[out, in]``
like torch, so no layout changes.  The per-head width comes from ``config.head_size``
and may differ from ``hidden_size / num_attention_heads`` (width-pruned models).

Dropout: the model draws no random numbers.  A training forward pass takes the core's
keep-masks (:func:`zoo_core.dropout.dropout_masks`, drawn on the host per example and
keyed by seed, step, stream and dataset index), scaled to float multipliers and passed
in as a ``mindspore.mutable`` tuple (:func:`dropout_inputs`), one tensor per dropout
site in the order of :func:`dropout_shapes`; each site is multiplied by its mask.  So
every backend, process count and padding drops the same elements, resuming needs no
random state, and GRAPH and PyNative mode see the same masks (MindSpore's CPU random
kernels keep their state inside the kernel, where it can be neither saved nor
restored).  Without masks (None: predict, export, importance, the teacher) nothing is
dropped.

Mixed precision (``train.precision`` bf16 / fp16, :mod:`zoo_core.precision`): a training
forward pass takes ``compute``, the dtype its matmuls run in (:func:`compute_dtype`;
None: float32 throughout, the default of every other caller).  Every linear layer and
the two attention matmuls cast their inputs (and weights) to it and their result back
to float32 (:func:`low_dense`, :func:`low_matmul`); embeddings, LayerNorm, softmax,
GELU, dropout, residuals and the losses stay float32, as do the weights (the cast's
gradient is float32 again).  What torch's autocast does, spelled out: MindSpore's
``amp.auto_mixed_precision`` rewrites the network (and writes the rewritten code into
the working directory), and this model is ours to write.
"""

from __future__ import annotations

import math
from dataclasses import replace

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from zoo_core.backend import Batch
from zoo_core.dropout import dropout_masks
from zoo_core.models.config import BertConfig

#: what is added to the attention scores of padded keys (exp underflows to exactly 0)
MASK_VALUE = -1.0e9

#: ``train.precision`` -> the dtype a training step's matmuls compute in (fp32: None)
COMPUTE_DTYPES = {"bf16": ms.bfloat16, "fp16": ms.float16}

#: the scaled keep-mask of every dropout site, in consumption order (:func:`dropout_inputs`)
Masks = tuple[Tensor, ...] | None


#: Abramowitz & Stegun 7.1.26: erf(x) ~ 1 - t * poly(t) * exp(-x^2), t = 1 / (1 + p x);
#: |error| <= 1.5e-7 in exact arithmetic, about 1.5e-6 in float32
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_polynomial(x: Tensor) -> Tensor:
    """``erf(x)`` from ops that MindSpore's ONNX exporter knows (it cannot export ``Erf``)."""
    ax = ops.abs(x)
    one = ax * 0.0 + 1.0  # a tensor: a float numerator would become Reciprocal, also not exportable
    t = one / (one + _ERF_P * ax)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
    sign = x / (ax + 1e-30)  # no Sign in the exporter either; erf(0) = 0 either way
    return sign * (one - poly * ops.exp(-ax * ax))


def activation(name: str, x: Tensor) -> Tensor:
    """The feed-forward activation ``name`` (exact erf GELU, tanh GELU or ReLU) of ``x``.

    ``"gelu_onnx"`` is exact GELU with :func:`erf_polynomial` (for ONNX export only).
    """
    if name == "gelu":
        return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))
    if name == "gelu_onnx":
        return 0.5 * x * (1.0 + erf_polynomial(x * (1.0 / math.sqrt(2.0))))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    return ops.relu(x)


def dropout(x: Tensor, mask: Tensor | None) -> Tensor:
    """Dropout as the core draws it: ``x`` times its scaled keep-mask (identity for None)."""
    if mask is None:
        return x
    return x * mask


def dropout_shapes(config: BertConfig, batch_size: int, length: int) -> list[tuple[int, ...]]:
    """The shape of every dropout site's mask, in the order the model consumes them.

    The embedding output, then per layer the attention probabilities, the attention
    block's output and the feed-forward block's output, then the pooled vector (the
    order of :meth:`zoo_core.dropout.DropoutMasks.scaled`).
    """
    b, t, h = batch_size, length, config.hidden_size
    shapes: list[tuple[int, ...]] = [(b, t, h)]
    for _ in range(config.num_hidden_layers):
        shapes += [(b, config.num_attention_heads, t, t), (b, t, h), (b, t, h)]
    shapes.append((b, h))
    return shapes


def dropout_inputs(config: BertConfig, batch: Batch, seed: int, stream: int = 0) -> Masks:
    """The core's scaled dropout masks of ``batch``'s training pass, or None without dropout.

    ``batch`` is the one the compiled step runs (already padded to its bucketed length:
    the masks have its width); ``seed`` is the run's, ``stream`` the forward pass's
    within its step (DynaBERT's ``k``-th width: ``k``), see
    :func:`zoo_core.dropout.dropout_masks`.  The tuple is ``mindspore.mutable``: a
    compiled step takes it as an input, not as a constant.
    """
    masks = dropout_masks(config, batch, seed, stream)
    if masks is None:
        return None
    return ms.mutable(tuple(Tensor(m) for m in masks.scaled()))


class BertEmbeddings(nn.Cell):
    """Word + position + token-type embeddings, then LayerNorm (and dropout, given a mask)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm((h,), epsilon=config.layer_norm_eps)

    def construct(self, input_ids: Tensor, token_type_ids: Tensor, keep: Tensor | None) -> Tensor:
        positions = ops.arange(input_ids.shape[1]).astype(ms.int32)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return dropout(self.LayerNorm(x), keep)


def compute_dtype(precision: str) -> ms.Type | None:
    """The dtype the matmuls of a training step in ``precision`` run in (None for fp32)."""
    return COMPUTE_DTYPES.get(precision)


def low_dense(x: Tensor, weight: Tensor, bias: Tensor, compute: ms.Type) -> Tensor:
    """``x @ weight.T + bias`` computed in ``compute`` (inputs cast to it), returned as float32."""
    return ops.dense(x.astype(compute), weight.astype(compute), bias.astype(compute)).astype(ms.float32)


def low_matmul(a: Tensor, b: Tensor, compute: ms.Type | None) -> Tensor:
    """``a @ b``, in ``compute`` (returned as float32) when given, else in float32 as it is."""
    if compute is None:
        return ops.matmul(a, b)
    return ops.matmul(a.astype(compute), b.astype(compute)).astype(ms.float32)


def linear(dense: nn.Dense, x: Tensor, compute: ms.Type | None) -> Tensor:
    """``dense(x)``, its matmul in ``compute`` when given (:func:`low_dense`)."""
    if compute is None:
        return dense(x)
    return low_dense(x, dense.weight, dense.bias, compute)


def dense_rows(dense: nn.Dense, x: Tensor, rows: int | None, compute: ms.Type | None = None) -> Tensor:
    """``dense(x)`` restricted to its first ``rows`` outputs (all when None): a narrower layer."""
    if rows is None:
        return linear(dense, x, compute)
    if compute is not None:
        return low_dense(x, dense.weight[:rows], dense.bias[:rows], compute)
    return ops.dense(x, dense.weight[:rows], dense.bias[:rows])


def dense_inputs(dense: nn.Dense, x: Tensor, columns: int | None, compute: ms.Type | None = None) -> Tensor:
    """``dense`` applied to ``x`` that holds only the first ``columns`` of its inputs (all when None)."""
    if columns is None:
        return linear(dense, x, compute)
    if compute is not None:
        return low_dense(x, dense.weight[:, :columns], dense.bias, compute)
    return ops.dense(x, dense.weight[:, :columns], dense.bias)


class BertSelfAttention(nn.Cell):
    """Multi-head scaled dot-product attention with ``config.head_size`` wide heads.

    ``heads`` (None: all) runs only the first heads (DynaBERT width), reading only their
    rows of the query/key/value projections; ``gates`` (None: none), a ``[heads]``
    tensor, scales each head's context vectors (head importance).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        width = self.num_heads * self.head_size
        self.query = nn.Dense(config.hidden_size, width)
        self.key = nn.Dense(config.hidden_size, width)
        self.value = nn.Dense(config.hidden_size, width)
        self.scale = 1.0 / math.sqrt(self.head_size)

    def _heads(self, x: Tensor, heads: int) -> Tensor:
        """``[B, T, H*D]`` -> ``[B, H, T, D]``."""
        b, t, _ = x.shape
        return x.reshape(b, t, heads, self.head_size).transpose(0, 2, 1, 3)

    def construct(
        self,
        x: Tensor,
        mask: Tensor,
        keep: Tensor | None,
        heads: int | None = None,
        gates: Tensor | None = None,
        compute: ms.Type | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Context ``[B, T, H*D]`` and the pre-softmax scores ``[B, H, T, T]`` (before the mask).

        ``mask`` is additive, ``[B, 1, 1, T]``: 0 for real keys, :data:`MASK_VALUE` for padding.
        ``keep``, the attention probabilities' scaled dropout mask (None: no dropout), is
        always the full model's (``[B, heads, T, T]``); a narrower width uses its first heads'.
        ``compute``: the matmuls' dtype (None: float32), see the module docstring.
        """
        n = self.num_heads if heads is None else heads
        rows = None if heads is None else heads * self.head_size
        q = self._heads(dense_rows(self.query, x, rows, compute), n)
        k = self._heads(dense_rows(self.key, x, rows, compute), n)
        v = self._heads(dense_rows(self.value, x, rows, compute), n)
        scores = low_matmul(q * self.scale, k.transpose(0, 1, 3, 2), compute)
        if keep is not None and heads is not None:
            keep = keep[:, :heads]
        probs = dropout(ops.softmax(scores + mask, -1), keep)
        context = low_matmul(probs, v, compute)
        if gates is not None:
            context = context * gates[:, None, None]
        context = context.transpose(0, 2, 1, 3)
        b, t = context.shape[0], context.shape[1]
        return context.reshape(b, t, n * self.head_size), scores


class BertSelfOutput(nn.Cell):
    """Attention output projection, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Dense(config.num_attention_heads * config.head_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)

    def construct(
        self,
        context: Tensor,
        residual: Tensor,
        keep: Tensor | None,
        columns: int | None = None,
        compute: ms.Type | None = None,
    ) -> Tensor:
        return self.LayerNorm(dropout(dense_inputs(self.dense, context, columns, compute), keep) + residual)


class BertAttention(nn.Cell):
    """Self-attention plus its output block (Hugging Face names the inner one ``self``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)


class BertIntermediate(nn.Cell):
    """The feed-forward block's first projection and activation (``neurons``: the first only)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Dense(config.hidden_size, config.intermediate_size)
        self.act = config.hidden_act

    def construct(self, x: Tensor, neurons: int | None = None, compute: ms.Type | None = None) -> Tensor:
        return activation(self.act, dense_rows(self.dense, x, neurons, compute))


class BertFFNOutput(nn.Cell):
    """The feed-forward block's second projection, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Dense(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)

    def construct(
        self,
        hidden: Tensor,
        residual: Tensor,
        keep: Tensor | None,
        neurons: int | None = None,
        compute: ms.Type | None = None,
    ) -> Tensor:
        return self.LayerNorm(dropout(dense_inputs(self.dense, hidden, neurons, compute), keep) + residual)


class BertLayer(nn.Cell):
    """One transformer encoder layer (post-LayerNorm, as in BERT)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertFFNOutput(config)

    def construct(
        self,
        x: Tensor,
        mask: Tensor,
        probs_keep: Tensor | None,
        attention_keep: Tensor | None,
        ffn_keep: Tensor | None,
        heads: int | None = None,
        neurons: int | None = None,
        gates: Tensor | None = None,
        compute: ms.Type | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The layer's output and its attention scores, on its first ``heads`` and ``neurons`` if given.

        The three ``*_keep`` are the layer's scaled dropout masks (None: no dropout);
        ``compute`` the matmuls' dtype (None: float32).
        """
        context, scores = self.attention.self(x, mask, probs_keep, heads, gates, compute)
        columns = None if heads is None else heads * self.attention.self.head_size
        x = self.attention.output(context, x, attention_keep, columns, compute)
        return self.output(self.intermediate(x, neurons, compute), x, ffn_keep, neurons, compute), scores


class BertEncoder(nn.Cell):
    """The stack of layers (a cell of its own for the ``encoder.layer.N`` names)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.CellList([BertLayer(config) for _ in range(config.num_hidden_layers)])


class BertPooler(nn.Cell):
    """``tanh(dense(h[:, 0]))``: the [CLS] position's pooled representation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Dense(config.hidden_size, config.hidden_size)

    def construct(self, x: Tensor, compute: ms.Type | None = None) -> Tensor:
        return ops.tanh(linear(self.dense, x[:, 0], compute))


class BertModel(nn.Cell):
    """Embeddings, encoder and pooler (the ``bert.`` prefix of the canonical names)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)


class BertForSequenceClassification(nn.Cell):
    """BERT with a classification (or, with one label, regression) head.

    ``construct`` returns ``(logits, hidden_states, attentions)``: ``hidden_states`` the
    embedding output then every layer's (``L + 1`` tensors ``[B, T, hidden]``),
    ``attentions`` every layer's pre-softmax scores ``[B, heads, T, T]`` (scaled by
    ``1/sqrt(head_size)``, before the padding mask); both empty tuples unless asked for.

    ``width`` (DynaBERT), ``(heads, neurons)`` from :func:`zoo_core.models.width.width_dims`,
    runs every layer on its first heads and FFN neurons: exactly what the sliced sub-model
    computes, from the one set of full-size weights.  ``gates`` ``[layers, heads]`` scales
    every head's context vectors (for head importance).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.classifier = nn.Dense(config.hidden_size, config.num_labels)
        self.num_layers = config.num_hidden_layers

    def construct(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor,
        keep: Masks = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        width: tuple[int, int] | None = None,
        gates: Tensor | None = None,
        compute: ms.Type | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Logits ``[B, num_labels]``, hidden states and attention scores (see the class docstring).

        ``attention_mask`` is ``[B, T]``, 1 for real tokens and 0 for padding; ``keep``
        the scaled dropout masks from :func:`dropout_inputs` (None: no dropout);
        ``compute`` the dtype of the matmuls (None: float32; see the module docstring).
        """
        mask = (1.0 - attention_mask.astype(ms.float32)[:, None, None, :]) * MASK_VALUE
        x = self.bert.embeddings(input_ids, token_type_ids, None if keep is None else keep[0])
        hidden_states = (x,)  # type: tuple[Tensor, ...]
        attentions = ()  # type: tuple[Tensor, ...]
        heads = None if width is None else width[0]
        neurons = None if width is None else width[1]
        for i in range(self.num_layers):
            layer_gates = None if gates is None else gates[i]
            if keep is None:
                x, scores = self.bert.encoder.layer[i](
                    x, mask, None, None, None, heads, neurons, layer_gates, compute
                )
            else:
                x, scores = self.bert.encoder.layer[i](
                    x,
                    mask,
                    keep[1 + 3 * i],
                    keep[2 + 3 * i],
                    keep[3 + 3 * i],
                    heads,
                    neurons,
                    layer_gates,
                    compute,
                )
            hidden_states = hidden_states + (x,)  # noqa: RUF005 (keep to what GRAPH mode parses)
            attentions = attentions + (scores,)  # noqa: RUF005
        pooled = self.bert.pooler(x, compute)
        if keep is not None:  # indexed from the front: keep[-1] misreads a mutable tuple in GRAPH mode
            pooled = dropout(pooled, keep[1 + 3 * self.num_layers])
        logits = linear(self.classifier, pooled, compute)
        return (
            logits,
            hidden_states if output_hidden_states else (),
            attentions if output_attentions else (),
        )


#: sequence lengths are padded up to a multiple of this inside the backend (fewer compiles)
PAD_MULTIPLE = 16


def padded_length(length: int, limit: int, multiple: int = PAD_MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple``, but not past ``limit`` (nor below ``length``)."""
    return max(length, min(-(-length // multiple) * multiple, limit))


def pad_to(batch: Batch, length: int) -> Batch:
    """``batch`` with its sequence axis padded (token 0, mask 0) to ``length`` positions.

    Labels, indices and step are kept (they key the batch's dropout masks).
    """
    extra = length - batch.input_ids.shape[1]
    if extra <= 0:
        return batch

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(np.asarray(a), ((0, 0), (0, extra)))

    return replace(
        batch,
        input_ids=pad(batch.input_ids),
        token_type_ids=pad(batch.token_type_ids),
        attention_mask=pad(batch.attention_mask),
    )


def batch_tensors(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """``input_ids``, ``token_type_ids`` and ``attention_mask`` as int32 tensors."""
    return (
        Tensor(np.asarray(batch.input_ids, np.int32)),
        Tensor(np.asarray(batch.token_type_ids, np.int32)),
        Tensor(np.asarray(batch.attention_mask, np.int32)),
    )
