"""Cross-backend parity: one tiny checkpoint's logits on every installed backend, each in its own process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zoo_core.errors import ZooError
from zoo_core.parity import compare, load_batches, parity, save_batches

runner = CliRunner()
INSTALLED = [
    name
    for name, module in (("torch", "zoo_torch"), ("paddle", "zoo_paddle"), ("mindspore", "zoo_mindspore"))
    if importlib.util.find_spec(module) is not None
]


@pytest.fixture
def checkpoint(tiny_run: Path) -> Path:
    """The tiny run's best checkpoint (non-trivial weights, a task in zoo.json)."""
    return tiny_run / "best"


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
def test_every_backend_gives_the_same_logits_at_every_width(checkpoint: Path, tmp_path: Path) -> None:
    rows = parity(
        checkpoint, INSTALLED, [1.0, 0.5], tmp_path / "parity", batches=3, batch_size=8, max_seq_length=32
    )
    pairs = len(INSTALLED) * (len(INSTALLED) - 1) // 2
    assert len(rows) == 2 * pairs
    for row in rows:
        assert row.logits > 0
        assert row.max_abs_diff <= 1e-4, row


def test_saved_batches_are_real_padded_examples(checkpoint: Path, tmp_path: Path) -> None:
    count = save_batches(checkpoint, tmp_path / "b.npz", batches=2, batch_size=4, max_seq_length=16)
    batches = load_batches(tmp_path / "b.npz")
    assert count == len(batches) == 2
    assert all(b.input_ids.shape == b.attention_mask.shape and b.input_ids.shape[0] == 4 for b in batches)
    assert batches[0].input_ids.shape[1] >= batches[1].input_ids.shape[1]  # longest first


def test_compare_reports_the_largest_difference(tmp_path: Path) -> None:
    a = {"1_0": np.zeros((2, 2), np.float32), "1_1": np.zeros((1, 2), np.float32)}
    b = {"1_0": np.zeros((2, 2), np.float32), "1_1": np.array([[0.0, 0.25]], np.float32)}
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "b.npz", **b)
    (row,) = compare({"a": tmp_path / "a.npz", "b": tmp_path / "b.npz"}, [1.0])
    assert (row.first, row.second, row.max_abs_diff, row.logits) == ("a", "b", 0.25, 6)


def test_a_failing_worker_names_its_backend(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ZooError, match=r"the nosuch parity worker failed: .*nosuch"):
        parity(
            checkpoint, ["torch", "nosuch"], [1.0], tmp_path / "p", batches=1, batch_size=2, max_seq_length=16
        )
