"""Length-bucketed batching and padding into :class:`~zoo_core.backend.Batch`.

Training batches are drawn from buckets of similar length so that padding stays
small while the order remains random; evaluation batches are sorted by length
and the caller puts predictions back in order through ``Batch.indices``.
"""

from __future__ import annotations

import numpy as np

from zoo_core.backend import Batch
from zoo_core.data.dataset import TokenizedDataset


def collate(dataset: TokenizedDataset, indices: np.ndarray) -> Batch:
    """Examples ``indices`` of ``dataset`` padded with id 0 to the longest of them.

    ``input_ids``, ``token_type_ids`` and ``attention_mask`` are int64 ``[B, T]``;
    labels come from the dataset (None when it has none).
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    starts = dataset.offsets[indices]
    lengths = dataset.offsets[indices + 1] - starts
    width = int(lengths.max()) if indices.size else 0
    positions = np.arange(width, dtype=np.int64)
    mask = positions[None, :] < lengths[:, None]
    source = (starts[:, None] + positions[None, :])[mask]
    input_ids = np.zeros(mask.shape, dtype=np.int64)
    token_type_ids = np.zeros(mask.shape, dtype=np.int64)
    input_ids[mask] = dataset.ids[source]
    token_type_ids[mask] = dataset.type_ids[source]
    labels = None if dataset.labels is None else dataset.labels[indices]
    return Batch(input_ids, token_type_ids, mask.astype(np.int64), labels, indices)


def micro_batches(batch: Batch, steps: int) -> list[tuple[Batch, float]]:
    """``batch`` cut into ``steps`` consecutive micro-batches, each with its share of the examples.

    Sizes differ by at most one (an empty part is left out when the batch has fewer
    than ``steps`` examples); each micro-batch is trimmed to its own longest
    sequence.  The weights sum to 1, so ``sum(weight * mean_loss(micro))`` is the
    batch's mean loss and its gradient the batch's gradient.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if steps == 1:
        return [(batch, 1.0)]
    total = len(batch)
    out: list[tuple[Batch, float]] = []
    for part in _micro_parts(total, steps):
        width = int(batch.attention_mask[part].sum(axis=1).max())
        micro = Batch(
            input_ids=batch.input_ids[part, :width],
            token_type_ids=batch.token_type_ids[part, :width],
            attention_mask=batch.attention_mask[part, :width],
            labels=None if batch.labels is None else batch.labels[part],
            indices=None if batch.indices is None else batch.indices[part],
            step=batch.step,
        )
        out.append((micro, part.size / total))
    return out


def _micro_parts(total: int, steps: int) -> list[np.ndarray]:
    """The positions of each non-empty micro-batch of a batch of ``total`` examples."""
    return [part for part in np.array_split(np.arange(total), steps) if part.size]


def micro_batch_shapes(lengths: np.ndarray, steps: int) -> list[tuple[int, int]]:
    """``(examples, padded length)`` of each micro-batch :func:`micro_batches` cuts from a batch.

    ``lengths`` are the batch's examples' token counts in batch order; the batch itself is
    not needed (:mod:`zoo_core.flops` counts a step's work from these shapes).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    lengths = np.asarray(lengths).reshape(-1)
    if steps == 1:
        return [(int(lengths.size), int(lengths.max()))] if lengths.size else []
    return [(int(part.size), int(lengths[part].max())) for part in _micro_parts(lengths.size, steps)]


def train_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    bucket_batches: int = 50,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """This rank's batches of example indices for one epoch, the same for every (seed, epoch).

    All indices are shuffled and cut into chunks of ``bucket_batches`` global
    batches (``batch_size × world_size`` examples); each chunk is sorted by length
    and cut into global batches, and the order of all global batches is shuffled.
    Rank ``r`` takes ``global_batch[r::world_size]``, so ranks see similar lengths.

    Every example appears once per epoch across ranks, except: with ``drop_last``
    the final short global batch is dropped; without it, a final global batch with
    fewer than ``world_size`` examples is still dropped (on every rank), so that
    all ranks always run the same number of steps.
    """
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError("batch_size and bucket_batches must be at least 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    if seed < 0 or epoch < 0:
        raise ValueError("seed and epoch must be non-negative")
    lengths = np.asarray(lengths).reshape(-1)
    rng = np.random.default_rng([seed, epoch])
    global_size = batch_size * world_size
    chunk_size = global_size * bucket_batches
    order = rng.permutation(lengths.size)
    global_batches: list[np.ndarray] = []
    for start in range(0, order.size, chunk_size):
        chunk = order[start : start + chunk_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        global_batches.extend(chunk[i : i + global_size] for i in range(0, chunk.size, global_size))
    # only the very last global batch can be short, since chunks hold whole global batches
    if global_batches and len(global_batches[-1]) < (global_size if drop_last else world_size):
        global_batches.pop()
    shuffled = rng.permutation(len(global_batches))
    return [global_batches[i][rank::world_size] for i in shuffled]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """All indices in batches sorted by length, longest first, to minimise padding."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    lengths = np.asarray(lengths).reshape(-1)
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
