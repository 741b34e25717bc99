"""Model FLOPs of a training step (zoo_core.flops), and where runs report them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import TINY, RecipeWriter
from zoo_core.backend import Batch, DistillSpec, TrainSpec, WidthSpec
from zoo_core.cli.main import app
from zoo_core.data import WordPieceTokenizer, load_dataset, train_batches
from zoo_core.data.batching import micro_batch_shapes, micro_batches
from zoo_core.flops import (
    StepFlops,
    distill_step,
    finetune_step,
    forward_flops,
    training_flops,
    width_step,
)
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.tasks import get_task
from zoo_core.trainers import Training

# TINY: L = 2 layers, h = 32, 4 heads of 8 (a = 32), I = 64, c = 2 labels.  At B = 2, T = 5
# (10 tokens) one layer's forward is
#   projections 2·10·(3·32·32 + 32·32 + 2·32·64) = 20·8192 = 163,840
#   attention   2·2·2·5·5·32                      =          6,400
# = 170,240; two layers 340,480; pooler and classifier 2·2·32·(32 + 2) = 4,352.
TINY_FORWARD_2x5 = 344_832
# At width 0.5 (2 heads: a = 16; I = 32) one layer is 20·(3·32·16 + 16·32 + 2·32·32) + 2·2·2·5·5·16
# = 81,920 + 3,200 = 85,120; two layers 170,240; the head stays whole (4,352).
TINY_HALF_FORWARD_2x5 = 174_592


def test_forward_flops_of_a_tiny_config_by_hand() -> None:
    assert forward_flops(TINY, 2, 5) == TINY_FORWARD_2x5
    assert training_flops(TINY, 2, 5) == 3 * TINY_FORWARD_2x5
    assert forward_flops(TINY, 0, 5) == forward_flops(TINY, 2, 0) == 0
    # attention grows with T², the rest with T: doubling T more than doubles the layers' part
    layers = TINY_FORWARD_2x5 - 4_352
    assert forward_flops(TINY, 2, 10) == 2 * (layers - 2 * 6_400) + 4 * 2 * 6_400 + 4_352


def test_fine_tune_step_sums_its_micro_batches() -> None:
    step = finetune_step(TINY)
    assert step([(2, 5)]) == 3 * TINY_FORWARD_2x5
    assert step([(2, 5), (2, 5)]) == 6 * TINY_FORWARD_2x5
    assert step([]) == 0


def test_width_step_slices_heads_and_neurons_and_adds_the_teacher() -> None:
    spec = WidthSpec(TrainSpec("classification"), widths=(1.0, 0.5))
    step = width_step(TINY, TINY, spec)
    assert [(c.num_attention_heads, c.intermediate_size, c.hidden_size) for c in step.students] == [
        (4, 64, 32),
        (2, 32, 32),
    ]
    # students forward and backward at each width, the full-width teacher forward once
    expected = 3 * TINY_FORWARD_2x5 + 3 * TINY_HALF_FORWARD_2x5 + TINY_FORWARD_2x5
    assert step([(2, 5)]) == expected == 1_903_104


def test_distill_step_adds_the_teacher_and_the_projection() -> None:
    student = TINY.replace(num_hidden_layers=1, hidden_size=16, intermediate_size=32)
    prediction = distill_step(student, TINY, DistillSpec(TrainSpec("classification"), "prediction", (2,)))
    assert prediction([(2, 5)]) == training_flops(student, 2, 5) + TINY_FORWARD_2x5
    intermediate = distill_step(student, TINY, DistillSpec(TrainSpec("classification"), "intermediate", (2,)))
    # P: 16 -> 32 on the student's 2 hidden states, trained: 3 · 2 · (2·10·16·32)
    assert intermediate([(2, 5)]) == prediction([(2, 5)]) + 3 * 2 * 2 * 10 * 16 * 32
    same = distill_step(TINY, TINY, DistillSpec(TrainSpec("classification"), "intermediate", (1, 2)))
    assert same.projection is None


def test_student_hand_count_for_its_own_shape() -> None:
    # student: 1 layer, h = 16, 4 heads of 4 (a = 16), I = 32; B = 2, T = 5
    student = TINY.replace(num_hidden_layers=1, hidden_size=16, intermediate_size=32)
    layer = 2 * 10 * (3 * 16 * 16 + 16 * 16 + 2 * 16 * 32) + 4 * 2 * 25 * 16
    assert forward_flops(student, 2, 5) == layer + 2 * 2 * 16 * 18 == 45_312


def tiny_batch(lengths: list[int]) -> Batch:
    width = max(lengths)
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return Batch(mask * 7, np.zeros_like(mask), mask, np.zeros(len(lengths), np.int64))


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_micro_batch_shapes_are_the_micro_batches(steps: int) -> None:
    lengths = [3, 9, 4, 4, 12]
    micros = micro_batches(tiny_batch(lengths), steps)
    assert micro_batch_shapes(np.array(lengths), steps) == [m.input_ids.shape for m, _ in micros]


def test_training_counts_every_rank_and_micro_batch() -> None:
    training = Training(trainer=object(), accumulation_steps=2, flops=finetune_step(TINY))  # type: ignore[arg-type]
    # rank 0: micro-batches (2, 5) and (1, 3); rank 1: (2, 4) and (2, 5)
    shards = [np.array([5, 2, 3]), np.array([4, 1, 5, 5])]
    expected = sum(training_flops(TINY, b, t) for b, t in [(2, 5), (1, 3), (2, 4), (2, 5)])
    assert training.step_flops(shards) == expected
    assert Training(trainer=object()).step_flops(shards) is None  # type: ignore[arg-type]


def test_step_flops_is_hashable_and_comparable() -> None:
    assert finetune_step(TINY) == StepFlops((TINY,))


def test_a_run_reports_its_flops_in_metrics_and_result(write_recipe: RecipeWriter, sst2_dir: Path) -> None:
    recipe = write_recipe(name="flops")
    result = CliRunner().invoke(app, ["run", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "GFLOP/s" in result.output
    run = recipe.parent / "runs" / "flops"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert train and all(r["gflops_per_s"] > 0 for r in train)
    done = json.loads((run / "result.json").read_text())
    # the tiny recipe: 6 steps of 16 of the first 160 SST-2 rows, seed 42, max_seq_length 32
    tokenizer = WordPieceTokenizer(BUNDLED_VOCAB, lowercase=True)
    data = load_dataset(get_task("sst2"), sst2_dir, "train", tokenizer, 32, cache_dir=None)
    batches = train_batches(data.lengths, 16, seed=42, epoch=0)[:6]
    expected = sum(training_flops(TINY, len(b), int(data.lengths[b].max())) for b in batches)
    assert done["train_flops"] == expected
    assert done["train_gflops_per_s"] == pytest.approx(
        expected / done["train_seconds"] / 1e9, rel=0.05
    )  # train_seconds is rounded


def test_a_width_run_reports_teacher_and_widths(width_recipe: Callable[..., Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(width_recipe()), "-q"])
    assert result.exit_code == 0, result.output
    done = json.loads((tmp_path / "runs" / "dyna" / "result.json").read_text())
    records = [
        json.loads(line) for line in (tmp_path / "runs" / "dyna" / "metrics.jsonl").read_text().splitlines()
    ]
    assert done["train_flops"] > 0 and done["train_gflops_per_s"] > 0
    assert all(r["gflops_per_s"] > 0 for r in records if "loss" in r)
    # 4 steps of 16 sequences of at most 32 tokens, at widths 1, 0.75 and 0.5 plus the teacher
    widths = width_step(TINY, TINY, WidthSpec(TrainSpec("classification"), widths=(1.0, 0.75, 0.5)))
    assert done["train_flops"] <= 4 * widths([(16, 32)])
    assert done["train_flops"] > 4 * (training_flops(TINY, 16, 3) + forward_flops(TINY, 16, 3))
