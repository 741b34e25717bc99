"""The core's portable dropout masks: keyed per example, padding- and sharding-invariant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from zoo_core.backend import Batch
from zoo_core.data.batching import micro_batches
from zoo_core.dropout import DropoutMasks, dropout_masks
from zoo_core.runners.loop import LoopState, run_loop
from zoo_core.runners.progress import TrainingProgress
from zoo_core.runs import RunDir
from zoo_core.testing.conformance import pad_batch, tiny_batch, tiny_config
from zoo_core.testing.conformance.helpers import loop_plan

CONFIG = tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2)
SITES = ("embeddings", "attention_probs", "attention_output", "ffn_output", "pooled")


def _masks(batch: Batch, **kwargs: int) -> DropoutMasks:
    masks = dropout_masks(CONFIG, batch, seed=1, **kwargs)
    assert masks is not None
    return masks


def _real(masks: DropoutMasks, row: int, length: int) -> list[np.ndarray]:
    """One example's masks over its real positions only."""
    return [
        masks.embeddings[row, :length],
        masks.attention_probs[:, row, :, :length, :length],
        masks.attention_output[:, row, :length],
        masks.ffn_output[:, row, :length],
        masks.pooled[row],
    ]


def test_shapes_and_scales() -> None:
    batch = tiny_batch(batch_size=3, max_len=10)
    masks = _masks(batch)
    n, a, h = CONFIG.num_hidden_layers, CONFIG.num_attention_heads, CONFIG.hidden_size
    assert masks.embeddings.shape == (3, 10, h)
    assert masks.attention_probs.shape == (n, 3, a, 10, 10)
    assert masks.attention_output.shape == masks.ffn_output.shape == (n, 3, 10, h)
    assert masks.pooled.shape == (3, h)
    assert all(getattr(masks, site).dtype == bool for site in SITES)
    assert masks.hidden_scale == pytest.approx(1 / 0.7) and masks.attention_scale == pytest.approx(1 / 0.8)
    scaled = masks.scaled()
    assert len(scaled) == 2 + 3 * n and all(s.dtype == np.float32 for s in scaled)
    assert set(np.unique(scaled[1])) <= {0.0, np.float32(1 / 0.8)}


def _assert_drop_rate(keep: np.ndarray, rate: float, site: str) -> None:
    """The share of dropped elements is ``rate`` within 4 standard errors of a Bernoulli mean.

    The masks are drawn from fixed seeds, so the outcome is deterministic; the bound is
    derived from the element count rather than picked.
    """
    bound = 4 * np.sqrt(rate * (1 - rate) / keep.size)
    dropped = 1 - keep.mean()
    assert abs(dropped - rate) <= bound, f"{site}: dropped {dropped:.4f}, expected {rate} +- {bound:.4f}"


def test_keep_rates_follow_the_config() -> None:
    """Each site drops at its own rate (hidden 0.3, attention 0.2), over its real positions.

    About 9k elements per hidden site and 44k attention elements: the bounds are ±0.019 and
    ±0.0076, so the test fails when the two rates are swapped (attention then drops 0.3,
    the hidden sites 0.2) or the keep test is inverted (0.7 dropped).
    """
    batch = tiny_batch(batch_size=16, max_len=24)
    masks = _masks(batch)
    real = batch.attention_mask.astype(bool)
    _assert_drop_rate(masks.embeddings[real], 0.3, "embeddings")
    _assert_drop_rate(masks.attention_output[:, real], 0.3, "attention_output")
    _assert_drop_rate(masks.ffn_output[:, real], 0.3, "ffn_output")
    pairs = real[:, :, None] & real[:, None, :]  # [B, T, T]: real query and real key
    probs = masks.attention_probs.transpose(1, 3, 4, 0, 2)  # [B, T, T, N, A]
    _assert_drop_rate(probs[pairs], 0.2, "attention_probs")


def test_padding_is_kept_and_does_not_change_the_real_masks() -> None:
    batch = tiny_batch(batch_size=4, max_len=12)
    masks, longer = _masks(batch), _masks(pad_batch(batch, 20))
    wider = _masks(batch, length=16)
    lengths = batch.attention_mask.sum(axis=1)
    for row, length in enumerate(lengths):
        for a, b, c in zip(
            _real(masks, row, length), _real(longer, row, length), _real(wider, row, length), strict=True
        ):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        assert longer.embeddings[row, length:].all() and longer.ffn_output[:, row, length:].all()
        assert longer.attention_probs[:, row, :, :, length:].all()


def test_an_example_has_the_same_masks_in_any_batch() -> None:
    """Shards (data parallel) and micro-batches (accumulation) see their examples' own masks."""
    batch = replace(tiny_batch(batch_size=6, max_len=12), step=5)
    whole = _masks(batch)
    lengths = batch.attention_mask.sum(axis=1)
    offset = 0
    for micro, _ in micro_batches(batch, 3):
        assert micro.step == 5
        part = _masks(micro)
        for row in range(len(micro)):
            length = lengths[offset + row]
            for a, b in zip(_real(part, row, length), _real(whole, offset + row, length), strict=True):
                np.testing.assert_array_equal(a, b)
        offset += len(micro)


def test_seed_step_stream_and_index_each_change_the_masks() -> None:
    batch = tiny_batch(batch_size=2, max_len=10)
    base = _masks(batch).embeddings
    np.testing.assert_array_equal(_masks(batch).embeddings, base)  # deterministic
    others = [
        dropout_masks(CONFIG, batch, seed=2),
        dropout_masks(CONFIG, replace(batch, step=1), seed=1),
        dropout_masks(CONFIG, batch, seed=1, stream=1),
        dropout_masks(CONFIG, replace(batch, indices=batch.indices + 10), seed=1),
    ]
    for other in others:
        assert other is not None and not np.array_equal(other.embeddings, base)


def test_no_dropout_means_no_masks() -> None:
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    assert dropout_masks(config, tiny_batch(), seed=0) is None


def test_a_zero_rate_site_keeps_everything() -> None:
    config = tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)
    masks = dropout_masks(config, tiny_batch(), seed=0)
    assert masks is not None and masks.attention_probs.all() and not masks.embeddings.all()


def test_bad_arguments_are_refused() -> None:
    batch = tiny_batch(max_len=12)
    with pytest.raises(ValueError, match="indices"):
        dropout_masks(CONFIG, replace(batch, indices=None), seed=0)
    with pytest.raises(ValueError, match="length 8 is shorter than the batch"):
        dropout_masks(CONFIG, batch, seed=0, length=8)


class _RecordingTrainer:
    """A trainer that only records which step each batch says it belongs to."""

    scaler = None  # no fp16 loss scale
    flops = None  # counts no FLOPs

    def __init__(self) -> None:
        self.steps: list[int] = []

    def step(self, batch: Batch, lr: float) -> dict[str, float]:
        self.steps.append(batch.step)
        return {"loss": 0.0, "grad_norm": 0.0}

    def save_state(self, directory: Path) -> None:
        """Nothing to save."""

    def load_state(self, directory: Path) -> None:
        """Nothing to load."""


def test_the_training_loop_stamps_every_batch_with_its_step(tmp_path: Path) -> None:
    """``batch.step`` keys the masks: it must count on from where a resumed run stands."""
    plan = loop_plan(7)
    trainer = _RecordingTrainer()
    rundir = RunDir(tmp_path / "run", writer=False)
    with TrainingProgress(Console(quiet=True), plan.total_steps, "test", enabled=False) as progress:
        run_loop(
            plan=plan,
            lengths=np.full(20, 5),
            make_batch=lambda indices: tiny_batch(batch_size=len(indices)),
            trainer=trainer,
            evaluate=dict,
            save_checkpoint=lambda *_: None,
            portable_files=(),
            rundir=rundir,
            progress=progress,
            state=LoopState(step=3, batch_in_epoch=3),
        )
    assert trainer.steps == [3, 4, 5, 6]
