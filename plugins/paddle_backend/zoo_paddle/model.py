"""BERT for sequence classification in plain Paddle ``nn`` layers, named as PaddleNLP names it.

Why not ``paddlenlp.transformers.BertForSequenceClassification`` itself: PaddleNLP 2.8
builds its encoder from ``paddle.nn.TransformerEncoderLayer``, which cannot do two
things zoo's contract needs:

* per-head widths other than ``hidden_size / num_attention_heads``
  (``config.attention_head_size``, which width-pruned and TinyBERT-style students
  have): ``paddle.nn.MultiHeadAttention`` always splits ``embed_dim`` evenly;
* TinyBERT's attention loss needs the *pre-softmax* scores; ``MultiHeadAttention``
  returns only the post-softmax weights.

Importing paddlenlp also costs seconds (it pulls datasets, visualdl, ...) that a
backend should not spend on every command.
So the layers are written here, but with PaddleNLP's module tree and parameter names
(``bert.encoder.layers.N.self_attn.q_proj``, ``linear1``, ``norm1``, ...) and layouts
(Linear weights ``[in, out]``): for a standard config the state dict loads into
PaddleNLP's ``BertForSequenceClassification`` unchanged (``tests/test_paddle_model.py``
checks this), and :mod:`zoo_paddle.names` maps it to and from zoo's canonical names.
The forward pass is written to be ``paddle.jit.to_static``-able with dynamic batch and
sequence axes (no Python ints taken from tensor shapes).

Dropout: the model draws no random numbers.  A training forward is given the core's
keep-masks (:func:`zoo_core.dropout.dropout_masks`, scaled: :func:`dropout_inputs`) as
its ``dropout`` argument, a list of tensors (inputs, so a static program takes new
masks every call), and multiplies each dropout site by its mask; without it (predict,
eval, export, importance) nothing is dropped, in training mode or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import Tensor, nn

from zoo_core.backend import Batch
from zoo_core.dropout import DropoutMasks
from zoo_core.models.config import BertConfig

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": lambda x: F.gelu(x, approximate=False),
    "gelu_new": lambda x: F.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate=True),
    "relu": F.relu,
}

#: the scaled keep-masks of every dropout site, in consumption order (:func:`dropout_inputs`)
Dropout = Sequence[Tensor]

#: added to the scores of padded keys (float32's lowest value: exp() of it is exactly 0)
MASK_VALUE = float(np.finfo(np.float32).min)


class ModelOutput(NamedTuple):
    """What :class:`BertForSequenceClassification` returns.

    ``hidden_states`` (the embedding output, then each layer's: ``L + 1`` tensors
    ``[B, T, hidden]``) and ``attentions`` (each layer's pre-softmax scores
    ``[B, heads, T, T]``, scaled by ``1/sqrt(head_size)``, before the padding mask is
    added) are None unless asked for.
    """

    logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


class BertEmbeddings(nn.Layer):
    """Word + position + token-type embeddings, then LayerNorm (dropout is the model's)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.layer_norm = nn.LayerNorm(h, epsilon=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        # positions 0..T-1 for every row, without reading T as a Python int (to_static-safe)
        positions = paddle.cumsum(paddle.ones_like(input_ids), axis=1) - 1
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.layer_norm(x)


class MultiHeadAttention(nn.Layer):
    """Scaled dot-product self-attention with ``config.head_size`` wide heads (PaddleNLP's names).

    The head count is read off the projections' output width (``reshape`` with ``-1``),
    not taken from the config: run through paddleslim's OFA at a smaller width
    (:mod:`zoo_paddle.width`), Q/K/V give fewer units and the attention runs on that many
    heads.  ``head_gates`` (None: no gating) scales each head's context vectors, for
    DynaBERT's head importance.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        width = self.num_heads * self.head_size
        self.q_proj = nn.Linear(config.hidden_size, width)
        self.k_proj = nn.Linear(config.hidden_size, width)
        self.v_proj = nn.Linear(config.hidden_size, width)
        self.out_proj = nn.Linear(width, config.hidden_size)
        self.head_gates: Tensor | None = None

    def _heads(self, x: Tensor) -> Tensor:
        """``[B, T, H*D]`` -> ``[B, H, T, D]``, ``H`` being however many heads ``x`` holds."""
        return x.reshape([0, 0, -1, self.head_size]).transpose([0, 2, 1, 3])

    def forward(self, x: Tensor, mask: Tensor | None, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The output projection of the context ``[B, T, hidden]`` and the pre-softmax scores.

        ``mask`` is additive, ``[B, 1, 1, T]`` (0 for real keys, :data:`MASK_VALUE`
        for padding), or None when nothing is padded.  ``keep`` (None: no dropout)
        multiplies the attention probabilities: ``[B, heads, T, T]``, scaled.
        """
        q = self._heads(self.q_proj(x)) * (self.head_size**-0.5)
        k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        scores = paddle.matmul(q, k, transpose_y=True)
        probs = F.softmax(scores if mask is None else scores + mask, axis=-1)
        context = paddle.matmul(probs if keep is None else probs * keep, v)
        if self.head_gates is not None:
            context = context * self.head_gates.reshape([1, -1, 1, 1])
        context = context.transpose([0, 2, 1, 3]).reshape([0, 0, -1])
        return self.out_proj(context), scores


class TransformerEncoderLayer(nn.Layer):
    """One post-LayerNorm BERT layer, laid out as ``paddle.nn.TransformerEncoderLayer``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h, eps = config.hidden_size, config.layer_norm_eps
        self.self_attn = MultiHeadAttention(config)
        self.linear1 = nn.Linear(h, config.intermediate_size)
        self.linear2 = nn.Linear(config.intermediate_size, h)
        self.norm1 = nn.LayerNorm(h, epsilon=eps)
        self.norm2 = nn.LayerNorm(h, epsilon=eps)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def forward(
        self, x: Tensor, mask: Tensor | None, dropout: Dropout | None = None
    ) -> tuple[Tensor, Tensor]:
        """The layer's output ``[B, T, hidden]`` and its attention scores.

        ``dropout`` (None: no dropout) is this layer's three scaled keep-masks: the
        attention probabilities', the attention output's and the feed-forward output's.
        """
        probs_keep, attended_keep, ffn_keep = (None, None, None) if dropout is None else dropout
        attended, scores = self.self_attn(x, mask, probs_keep)
        x = self.norm1(x + _drop(attended, attended_keep))
        x = self.norm2(x + _drop(self.linear2(self.activation(self.linear1(x))), ffn_keep))
        return x, scores


class TransformerEncoder(nn.Layer):
    """The stack of layers (``encoder.layers.N``); the loop lives in the model's forward."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layers = nn.LayerList([TransformerEncoderLayer(config) for _ in range(config.num_hidden_layers)])


class BertPooler(nn.Layer):
    """``tanh(dense(h[:, 0]))``: the [CLS] position's pooled representation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return paddle.tanh(self.dense(x[:, 0]))


class BertModel(nn.Layer):
    """Embeddings, encoder and pooler (the ``bert.`` prefix); parameters only."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = TransformerEncoder(config)
        self.pooler = BertPooler(config)


class BertForSequenceClassification(nn.Layer):
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
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        dropout: Dropout | None = None,
    ) -> ModelOutput:
        """Logits ``[B, num_labels]``, plus hidden states and attention scores if asked.

        ``attention_mask`` is ``[B, T]`` with 1 for real tokens and 0 for padding;
        None means no padding.  ``dropout`` (:func:`dropout_inputs`; None: no dropout)
        is the scaled keep-mask of every dropout site, ``2 + 3 * layers`` tensors.
        """
        mask = None
        if attention_mask is not None:
            mask = (1.0 - attention_mask.unsqueeze([1, 2]).astype("float32")) * MASK_VALUE

        x = _drop(self.bert.embeddings(input_ids, token_type_ids), None if dropout is None else dropout[0])
        hidden_states = [x]
        attentions = []
        for i, layer in enumerate(self.bert.encoder.layers):
            x, scores = layer(x, mask, None if dropout is None else dropout[1 + 3 * i : 4 + 3 * i])
            hidden_states.append(x)
            attentions.append(scores)

        pooled = _drop(self.bert.pooler(x), None if dropout is None else dropout[-1])
        return ModelOutput(
            self.classifier(pooled),
            tuple(hidden_states) if output_hidden_states else None,
            tuple(attentions) if output_attentions else None,
        )


def _drop(x: Tensor, keep: Tensor | None) -> Tensor:
    """``x`` times its scaled keep-mask ``keep`` (``x`` itself when None)."""
    return x if keep is None else x * keep


def dropout_inputs(masks: DropoutMasks | None) -> list[Tensor] | None:
    """The model's ``dropout`` argument for the core's ``masks`` (None: no dropout).

    Each site's float32 multiplier (:meth:`DropoutMasks.scaled`: 0, or ``1 / (1 - p)``
    where kept), on paddle's current device.
    """
    if masks is None:
        return None
    return [paddle.to_tensor(m) for m in masks.scaled()]


def to_tensor(array: np.ndarray, dtype: str = "int64") -> Tensor:
    """``array`` as a paddle tensor of ``dtype`` on paddle's current device."""
    return paddle.to_tensor(np.ascontiguousarray(array, dtype=dtype))


def batch_inputs(batch: Batch) -> dict[str, Tensor | None]:
    """The model's inputs for ``batch`` on paddle's current device.

    The mask is dropped (None) when the batch holds no padding, which skips the
    mask addition; that check runs on the numpy array, so it costs no device sync.
    """
    mask = np.asarray(batch.attention_mask)
    return {
        "input_ids": to_tensor(batch.input_ids),
        "token_type_ids": to_tensor(batch.token_type_ids),
        "attention_mask": None if mask.all() else to_tensor(mask),
    }


def maybe_to_static(
    model: nn.Layer, to_static: bool, wrapper: nn.Layer | None = None
) -> Callable[..., ModelOutput]:
    """``model``'s forward, through ``paddle.jit.to_static`` (SOT mode) when ``to_static``.

    ``wrapper`` (``model`` in ``paddle.DataParallel``), when given, is what is called.
    The conversion replaces ``model.forward`` in place, so the wrapper calls the static
    forward while its gradient hooks stay on the (eager) parameters; the gradients
    match eager mode's (checked on 2 CPU processes).
    """
    call = model if wrapper is None else wrapper
    if not to_static:
        return call
    paddle.jit.to_static(model, full_graph=False)  # in place

    def forward(*args: Any, **kwargs: Any) -> ModelOutput:
        return ModelOutput(*call(*args, **kwargs))  # a static program returns a plain tuple

    return forward


#: ``train.precision`` -> ``paddle.amp.auto_cast``'s dtype (fp32: no autocast)
AMP_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16"}


def amp_options(precision: str) -> dict[str, Any]:
    """The ``paddle.amp.auto_cast`` arguments for ``precision``: level O1 (paddle's op lists), or disabled.

    Paddle autocasts only on CUDA, XPU and custom devices (Ascend): on CPU it would be
    a no-op, so the plugin declares fp32 alone there.
    """
    dtype = AMP_DTYPES.get(precision)
    return {"enable": dtype is not None, "level": "O1", "dtype": dtype or "float16"}


def autocast(precision: str) -> Any:
    """``paddle.amp.auto_cast`` for ``precision`` (weights stay float32; see :func:`amp_options`)."""
    return paddle.amp.auto_cast(**amp_options(precision))
