"""Portable dropout: the same keep-masks on every backend, process count and padding.

Each backend used to draw dropout from its own random generator, so the same recipe and
seed trained a different random realisation on torch, paddle and mindspore, and again
under ``--nproc 2`` (each process drew masks for its own shard).  The core now draws every
dropout mask on the host, **per example**, from a generator keyed by
``(seed, step, stream, dataset index)``, at the example's own length; backends multiply by
these masks instead of drawing their own.  So an example sees the same masks whichever
backend trains it, however many processes share the batch, and whatever the batch is
padded to.

For one example of real length ``L`` (``H`` hidden size, ``A`` attention heads, ``N``
layers) the generator ``numpy.random.default_rng([seed, step, stream, index])`` draws
one float32 vector of uniforms in ``[0, 1)`` and cuts it, in this order, into the noise
of every dropout site of BERT with a classification head:

1. the embedding output, ``[L, H]``;
2. for each layer ``i = 0 .. N-1``: the attention probabilities ``[A, L, L]`` (queries
   by keys), the attention block's output ``[L, H]`` (before the residual), the
   feed-forward block's output ``[L, H]`` (before the residual);
3. the pooled vector before the classifier, ``[H]``.

An element is kept where its uniform is ``>= p`` (``p`` the site's dropout
probability from the config) and kept elements are scaled by ``1 / (1 - p)`` (inverted
dropout).  A site whose ``p`` is 0 keeps everything.  Padded positions are always kept
(they never reach a real token).  ``stream`` separates several forward passes of one
step: DynaBERT's widths use stream ``k`` for the ``k``-th width of the step, every
other trainer stream 0.  A narrower width keeps the first heads of the full mask.

Costs a few milliseconds per SST-2 batch on the host (about 2.5 ns per element; an
example of 14 tokens in MiniLM-L6 has ~80k elements).  The stream depends on numpy's
PCG64 and ``Generator.random``, stable within a numpy release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo_core.backend import Batch
from zoo_core.models.config import BertConfig


@dataclass(frozen=True)
class DropoutMasks:
    """Keep-masks (``True`` = keep) of every dropout site for one forward pass of a batch.

    ``embeddings`` ``[B, T, H]``; ``attention_probs`` ``[N, B, A, T, T]``;
    ``attention_output`` and ``ffn_output`` ``[N, B, T, H]``; ``pooled`` ``[B, H]``
    (``T`` the padded length asked for, ``A`` the full model's head count).  Multiply a
    site's activations by ``mask * hidden_scale`` (``attention_scale`` for the
    attention probabilities): :meth:`scaled` does it for backends that prefer floats.
    """

    embeddings: np.ndarray
    attention_probs: np.ndarray
    attention_output: np.ndarray
    ffn_output: np.ndarray
    pooled: np.ndarray
    #: ``1 / (1 - hidden_dropout_prob)``
    hidden_scale: float
    #: ``1 / (1 - attention_probs_dropout_prob)``
    attention_scale: float

    def scaled(self) -> tuple[np.ndarray, ...]:
        """float32 multipliers in the model's consumption order.

        The embedding output, then per layer the attention probabilities, the attention
        output and the feed-forward output, then the pooled vector: ``2 + 3 N`` arrays.
        """
        h, a = np.float32(self.hidden_scale), np.float32(self.attention_scale)
        out: list[np.ndarray] = [self.embeddings * h]
        for i in range(self.attention_probs.shape[0]):
            out += [self.attention_probs[i] * a, self.attention_output[i] * h, self.ffn_output[i] * h]
        out.append(self.pooled * h)
        return tuple(out)


def has_dropout(config: BertConfig) -> bool:
    """True when training ``config`` drops anything at all."""
    return config.hidden_dropout_prob > 0.0 or config.attention_probs_dropout_prob > 0.0


def _keep(uniform: np.ndarray, p: float) -> np.ndarray:
    return uniform >= np.float32(p) if p > 0.0 else np.ones(uniform.shape, dtype=bool)


def dropout_masks(
    config: BertConfig,
    batch: Batch,
    seed: int,
    stream: int = 0,
    length: int | None = None,
) -> DropoutMasks | None:
    """The keep-masks of ``batch``'s training forward pass (None without dropout).

    ``seed`` is the run's (``TrainSpec.seed``), the step is ``batch.step`` (set by the
    training loop) and ``batch.indices`` key each example (required);
    ``length`` pads the masks beyond the batch's own width (a backend that buckets
    sequence lengths), default ``batch.input_ids.shape[1]``.  Raises ``ValueError`` when
    the batch has no indices or ``length`` is shorter than the batch.
    """
    if not has_dropout(config):
        return None
    if batch.indices is None:
        raise ValueError("dropout masks need batch.indices (each example's position in its dataset)")
    width = int(batch.input_ids.shape[1])
    t = width if length is None else int(length)
    if t < width:
        raise ValueError(f"length {t} is shorter than the batch ({width} tokens)")
    b, h, a, n = len(batch), config.hidden_size, config.num_attention_heads, config.num_hidden_layers
    p_hidden, p_attention = config.hidden_dropout_prob, config.attention_probs_dropout_prob
    embeddings = np.ones((b, t, h), dtype=bool)
    probs = np.ones((n, b, a, t, t), dtype=bool)
    attention_output = np.ones((n, b, t, h), dtype=bool)
    ffn_output = np.ones((n, b, t, h), dtype=bool)
    pooled = np.ones((b, h), dtype=bool)
    lengths = np.asarray(batch.attention_mask).sum(axis=1)
    for row, (index, real) in enumerate(zip(np.asarray(batch.indices), lengths, strict=True)):
        n_tokens = int(real)
        lh, all_ = n_tokens * h, a * n_tokens * n_tokens
        rng = np.random.default_rng([int(seed), int(batch.step), int(stream), int(index)])
        u = rng.random(lh + n * (all_ + 2 * lh) + h, dtype=np.float32)
        embeddings[row, :n_tokens] = _keep(u[:lh], p_hidden).reshape(n_tokens, h)
        at = lh
        for i in range(n):
            probs[i, row, :, :n_tokens, :n_tokens] = _keep(u[at : at + all_], p_attention).reshape(
                a, n_tokens, n_tokens
            )
            at += all_
            attention_output[i, row, :n_tokens] = _keep(u[at : at + lh], p_hidden).reshape(n_tokens, h)
            at += lh
            ffn_output[i, row, :n_tokens] = _keep(u[at : at + lh], p_hidden).reshape(n_tokens, h)
            at += lh
        pooled[row] = _keep(u[at : at + h], p_hidden)
    return DropoutMasks(
        embeddings,
        probs,
        attention_output,
        ffn_output,
        pooled,
        hidden_scale=1.0 / (1.0 - p_hidden),
        attention_scale=1.0 / (1.0 - p_attention),
    )
