"""Data-parallel conformance: ``zoo run --nproc 2`` through the backend's own launcher.

Mixed into :class:`~zoo_core.testing.conformance.BackendConformance`; every test
skips unless the backend registers a launcher.  The runs are real ``zoo run``
processes on a tiny model (dropout on, under the core's per-example masks) and a
small synthetic sentiment task, so two processes at per-device batch 4 must end with
the weights of one process at batch 8.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from zoo_core.backend import Backend
from zoo_core.checkpoint import open_model_dir, write_checkpoint
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights
from zoo_core.plugins import get_backend_spec

POSITIVE = ("good", "great", "fun", "lovely", "moving")
NEGATIVE = ("bad", "awful", "boring", "dull", "weak")
FILLER = ("the", "movie", "film", "story", "was", "is", "very", "a", "plot", "and")
#: seconds one launch may take (MindSpore's cluster start-up alone is ~15 s)
LAUNCH_TIMEOUT = 600


def write_sentiment_data(directory: Path, train: int = 64, dev: int = 32, seed: int = 0) -> Path:
    """GLUE-style SST-2 files (``sentence\\tlabel``) of short sentences built from common words."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("dev", dev)):
        lines = ["sentence\tlabel"]
        for _ in range(rows):
            label = int(rng.integers(2))
            words = list(rng.choice(FILLER, int(rng.integers(3, 12))))
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE)))
            lines.append(f"{' '.join(words)}\t{label}")
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


class ParallelRuns:
    """A folder with a tiny model, the sentiment data and recipe files; runs ``zoo`` in it."""

    def __init__(self, root: Path, backend: str) -> None:
        self.root, self.backend = root, backend
        config = BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            # dropout on: the core's per-example masks make it the same under any process count
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
        )
        self.model = write_checkpoint(root / "tiny-bert", config, init_weights(config, 0), BUNDLED_VOCAB, {})
        self.data = write_sentiment_data(root / "SST-2")

    def recipe(self, name: str, **fields: Any) -> Path:
        """Write ``name.yaml``: a fine-tune of the tiny model unless ``fields`` say otherwise."""
        recipe: dict[str, Any] = {
            "kind": "finetune",
            "name": name,
            "task": "sst2",
            "model": str(self.model),
            "data": {"dir": str(self.data), "max_seq_length": 32},
            "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1},
            "eval": {"every_epoch": False, "batch_size": 16},
            "output_dir": str(self.root / "runs" / name),
        }
        recipe.update(fields)
        recipe = {k: v for k, v in recipe.items() if v is not None}  # None: leave the field out
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        return path

    def zoo(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``zoo ARGS`` in a fresh process, run in the folder."""
        return subprocess.run(
            [sys.executable, "-m", "zoo_core", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=LAUNCH_TIMEOUT,
            check=False,
        )

    def run(self, recipe: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """``zoo run RECIPE --backend B ARGS``; fails the test unless it succeeds."""
        done = self.zoo("run", str(recipe), "--backend", self.backend, *args)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        return done


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    """The logged training steps of a run (metrics.jsonl without evaluations)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval" not in r]


class DataParallelConformance:
    """``zoo run --nproc 2`` on the backend: same weights as one process, chained recipes, errors."""

    @pytest.fixture
    def runs(self, backend: Backend, tmp_path: Path) -> ParallelRuns:
        """Tiny runs on this backend; skips unless it registers a launcher."""
        if get_backend_spec(backend.name).launcher is None:
            pytest.skip("backend registers no data-parallel launcher")
        return ParallelRuns(tmp_path, backend.name)

    def test_two_processes_train_the_weights_of_one(self, runs: ParallelRuns) -> None:
        recipe = runs.recipe("ft")
        runs.run(recipe, "-q", "--set", "output_dir=runs/one")
        two = runs.run(
            recipe, "-q", "--nproc", "2", "--set", "train.batch_size=4", "--set", "output_dir=runs/two"
        )
        assert "launching: ZOO_DATA_PARALLEL=1 " in two.stdout, two.stdout
        one_dir, two_dir = runs.root / "runs" / "one", runs.root / "runs" / "two"
        step = "checkpoints/step-0000004"
        one, two_weights = (open_model_dir(d / step).load_weights() for d in (one_dir, two_dir))
        for name, value in one.items():
            np.testing.assert_allclose(two_weights[name], value, rtol=0, atol=1e-5, err_msg=name)
        one_steps, two_steps = train_records(one_dir), train_records(two_dir)
        assert len(two_steps) == 4, "only rank 0 logs, once per step"
        for a, b in zip(one_steps, two_steps, strict=True):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), "the logged loss is the global batch's"
        one_result, two_result = (json.loads((d / "result.json").read_text()) for d in (one_dir, two_dir))
        assert two_result["final"] == pytest.approx(one_result["final"], abs=1e-9)
        assert two_result["steps"] == 4

    def test_an_overflow_on_one_rank_skips_the_step_on_every_rank(self, runs: ParallelRuns) -> None:
        """fp16: one training example's score (1e30) overflows the gradients of rank 1 only.

        It is the longest example, so it sits last in its length-sorted global batch of 8:
        on rank 1 (``global_batch[1::2]``).  Rank 0, which logs, must still skip that step
        (the verdict is taken on the reduced gradients), the same step one process skips,
        with the same loss scales before and after.
        """
        if "fp16" not in get_backend_spec(runs.backend).precisions_on("cpu"):
            pytest.skip("backend does not train in fp16 on cpu")
        data = runs.root / "scores"
        data.mkdir()
        rows = [f"{FILLER[i % 10]} {POSITIVE[i % 5]},{NEGATIVE[i % 5]},{i % 6}" for i in range(32)]
        rows[5] = (
            f"{' '.join(FILLER)},{' '.join(NEGATIVE)},1e30"  # finite in float32; its squared error is not
        )
        (data / "train.csv").write_text("a,b,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
        (data / "dev.csv").write_text("a,b,score\n" + "\n".join(rows[:5] + rows[6:]) + "\n")
        recipe = runs.recipe(
            "fp16",
            task={"name": "sim", "type": "regression", "text": "a", "text_pair": "b", "label": "score"},
            data={"train": str(data / "train.csv"), "dev": str(data / "dev.csv"), "max_seq_length": 32},
            train={
                "max_steps": 4,
                "batch_size": 8,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                "precision": "fp16",
                # small enough that no ordinary step overflows fp16; does not grow in 4 steps
                "loss_scaling": {"init_scale": 64.0, "growth_interval": 1000},
            },
        )
        runs.run(recipe, "-q", "--set", "output_dir=runs/one")
        runs.run(recipe, "-q", "--nproc", "2", "--set", "train.batch_size=4", "--set", "output_dir=runs/two")
        one, two = (train_records(runs.root / "runs" / d) for d in ("one", "two"))
        skipped = [[r["step"] for r in records if r["skipped_steps"]] for records in (one, two)]
        assert len(skipped[0]) == 1 and skipped[1] == skipped[0], skipped
        assert [r["loss_scale"] for r in two] == [r["loss_scale"] for r in one]
        for a, b in zip(one, two, strict=True):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-2), "fp16 steps of one and two processes"

    def test_chained_recipes_run_under_two_processes(self, runs: ParallelRuns) -> None:
        teacher = runs.recipe("teacher")  # not run yet: the distillation runs it first, in parallel
        short = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1}
        distill = runs.recipe(
            "student",
            kind="distill",
            model=None,
            teacher=str(teacher),
            student={"model": str(runs.model), "num_hidden_layers": 1, "init": "teacher_layers"},
            stages=[{"kind": "intermediate", "train": short}, {"kind": "prediction", "train": short}],
            train=None,
        )
        runs.run(distill, "-q", "--nproc", "2")
        assert (runs.root / "runs" / "teacher" / "result.json").is_file()
        assert (runs.root / "runs" / "student" / "best" / "model.safetensors").is_file()
        width = runs.recipe(
            "dyna",
            kind="width",
            model=None,
            teacher=str(runs.root / "runs" / "student"),
            width={"width_mult_list": [1.0, 0.5], "importance": {"examples": 16}},
            train=short,
        )
        runs.run(width, "-q", "--nproc", "2")
        result = json.loads((runs.root / "runs" / "dyna" / "result.json").read_text())
        assert set(result["final"]) == {"accuracy@1", "accuracy@0.5"}

    def test_a_failing_worker_is_reported_with_its_rank(self, runs: ParallelRuns) -> None:
        recipe = runs.recipe("broken", model=str(runs.root / "no-such-model"))
        done = runs.zoo("run", str(recipe), "--backend", runs.backend, "-q", "--nproc", "2")
        assert done.returncode != 0
        assert "error: rank " in done.stderr and "no-such-model" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr.split("error: rank ")[-1]
