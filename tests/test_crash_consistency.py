"""A kill campaign: SIGKILL a tiny ``zoo run`` at every durable write, resume, get the uninterrupted run.

``ZOO_FAULT_TRACE`` lists the durable writes of an uninterrupted run (recipe.yaml,
metrics.jsonl appends, step checkpoints, best/, pruning, result.json);
``ZOO_FAULT_KILL_AT=N`` makes a fresh run SIGKILL itself just before its N-th one.
Each killed run is resumed by running the same command again, and must end with
the uninterrupted run's weights, best/, result.json and metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, TINY, RecipeWriter
from zoo_core.checkpoint import open_model_dir, write_checkpoint
from zoo_core.cli.main import app
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.models.weights import init_weights

STSB = REPO / "data" / "glue" / "STS-B"
#: metrics.jsonl fields that are timings, different in every run
TIMINGS = ("samples_per_s", "tokens_per_s", "gflops_per_s")
#: what must have no twin in a finished run directory
TEMPORARY = (".tmp", ".old-", ".trash-")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny model, 48 training / 32 dev rows of STS-B and the recipe ``crash.yaml``.

    12 steps of 8 (two epochs of 6), evaluation every 4 steps and at each epoch's
    end (4, 6, 8, 12), logging every 2, keep_last 2; the learning rate is chosen so
    that best/ improves twice (steps 4 and 6) and is then pruned from the checkpoints.
    """
    root = tmp_path_factory.mktemp("campaign")
    write_checkpoint(root / "tiny-bert", TINY, init_weights(TINY, 0), BUNDLED_VOCAB, {})
    data = root / "STS-B"
    data.mkdir()
    for split, rows in (("train", 48), ("dev", 32)):
        lines = (STSB / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (data / f"{split}.tsv").write_text("".join(lines[: rows + 1]), encoding="utf-8")
    recipe = {
        "kind": "finetune",
        "name": "crash",
        "task": "stsb",
        "model": str(root / "tiny-bert"),
        "data": {"dir": str(data), "max_seq_length": 32},
        "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 2},
        "eval": {"every_steps": 4, "batch_size": 32},
        "checkpoints": {"keep_last": 2},
        "backend_options": {"torch": {"threads": 1}},
        "output_dir": str(root / "runs" / "straight"),
    }
    (root / "crash.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    (root / "cache").mkdir()
    return root


def zoo_subprocess(root: Path, output: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m zoo_core run crash.yaml -q --set output_dir=OUTPUT`` with extra environment variables."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo_core",
            "run",
            str(root / "crash.yaml"),
            "-q",
            "--set",
            f"output_dir={output}",
        ],
        cwd=root,
        env={**os.environ, "ZOO_CACHE_DIR": str(root / "cache"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_summary(run: Path) -> dict[str, Any]:
    """What must not depend on where the run was killed: weights, best/, result and metrics."""
    result = json.loads((run / "result.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = open_model_dir(run / "best")
    return {
        "weights": open_model_dir(run / "checkpoints" / "step-0000012").load_weights(),
        "best_weights": best.load_weights(),
        "best_step": best.meta["step"],
        "result": {
            k: result[k]
            for k in ("main_metric", "final", "best", "best_step", "steps", "train_samples", "train_flops")
        },
        "metrics": [{k: v for k, v in r.items() if k not in TIMINGS} for r in records],
        "checkpoints": sorted(p.name for p in (run / "checkpoints").iterdir()),
        "temporary": sorted(str(p) for p in run.rglob("*") if any(t in p.name for t in TEMPORARY)),
        "samples_per_s": result["train_samples_per_s"],
    }


def assert_same_run(got: dict[str, Any], expected: dict[str, Any], label: str) -> None:
    """The resumed run equals the uninterrupted one, bit for bit where it is numbers."""
    for key in ("weights", "best_weights"):
        assert got[key].keys() == expected[key].keys(), label
        for name, value in expected[key].items():
            np.testing.assert_array_equal(got[key][name], value, err_msg=f"{label}: {key} {name}")
    for key in ("best_step", "result", "metrics", "checkpoints"):
        assert got[key] == expected[key], f"{label}: {key}"
    assert got["temporary"] == [], f"{label}: temporary files left"
    assert got["samples_per_s"], f"{label}: no samples/s in result.json"


def test_kill_at_every_durable_write_then_resume(campaign: Path) -> None:
    started = time.perf_counter()
    trace = campaign / "trace.txt"
    straight = zoo_subprocess(campaign, campaign / "runs" / "straight", ZOO_FAULT_TRACE=str(trace))
    assert straight.returncode == 0, straight.stderr
    writes = [line.split("\t", 1)[1] for line in trace.read_text().splitlines()]
    expected = run_summary(campaign / "runs" / "straight")
    assert expected["best_step"] == 6 and expected["checkpoints"] == ["step-0000008", "step-0000012"]
    # the writes this campaign must cover, each at least once
    kinds = {
        "recipe.yaml": "recipe.yaml",
        "metrics.jsonl": "to metrics.jsonl",
        "step checkpoint": "checkpoints/.step-",
        "best/ filled": ".best.tmp",
        "best/ moved aside": "move aside",
        "best/ renamed": "to " + str(campaign / "runs" / "straight" / "best"),
        "prune": ".trash-",
        "result.json": "result.json",
    }
    for kind, marker in kinds.items():
        assert any(marker in w for w in writes), f"no {kind} write in the trace: {writes}"

    # every durable write is a kill point (the uninterrupted run makes 31)
    points = list(range(1, len(writes) + 1))
    assert len(points) >= 20
    for point in points:
        run = campaign / "runs" / f"kill-{point:02d}"
        killed = zoo_subprocess(campaign, run, ZOO_FAULT_KILL_AT=str(point))
        assert killed.returncode == -signal.SIGKILL, (
            f"kill point {point} ({writes[point - 1]}): {killed.stderr}"
        )
        resumed = CliRunner().invoke(
            app, ["run", str(campaign / "crash.yaml"), "-q", "--set", f"output_dir={run}"]
        )
        assert resumed.exit_code == 0, f"kill point {point}: {resumed.output}"
        assert_same_run(run_summary(run), expected, f"kill point {point} ({writes[point - 1]})")
    print(f"{len(points)} kill points in {time.perf_counter() - started:.0f}s")


def test_stale_best_is_repaired_from_the_checkpoint(campaign: Path, tmp_path: Path) -> None:
    """The reported bug: a kill between step checkpoint and best/ used to leave best/ stale for good."""
    run = tmp_path / "stale"
    # kill just before best/ is filled the second time (step 6's improvement)
    trace = tmp_path / "trace.txt"
    assert zoo_subprocess(campaign, tmp_path / "probe", ZOO_FAULT_TRACE=str(trace)).returncode == 0
    lines = trace.read_text().splitlines()
    fills = [
        i for i, line in enumerate(lines, 1) if line.split("\t")[1].startswith("fill") and ".best.tmp" in line
    ]
    killed = zoo_subprocess(campaign, run, ZOO_FAULT_KILL_AT=str(fills[1]))
    assert killed.returncode == -signal.SIGKILL
    assert open_model_dir(run / "best").meta["step"] == 4  # stale: the step-6 checkpoint says best is 6
    assert list((run / "checkpoints").glob(".step-*.tmp-*")) == []
    resumed = CliRunner().invoke(
        app, ["run", str(campaign / "crash.yaml"), "-q", "--set", f"output_dir={run}"]
    )
    assert resumed.exit_code == 0, resumed.output
    result = json.loads((run / "result.json").read_text())
    assert result["best_step"] == 6 == open_model_dir(run / "best").meta["step"]


def test_sigterm_stops_like_ctrl_c(write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a scheduler sends: one line saying how to resume, exit 143, nothing temporary left."""
    from zoo_core.trainers import Training

    recipe = write_recipe(checkpoints={"save_steps": 2})
    step = Training.step
    calls = {"n": 0}

    def terminated_at_the_fourth(self: Training, batch: Any, lr: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch, lr)

    with monkeypatch.context() as patch:
        patch.setattr(Training, "step", terminated_at_the_fourth)
        result = CliRunner().invoke(app, ["run", str(recipe), "-q"])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().splitlines() == [
        "stopped by SIGTERM; earlier checkpoints are intact: run the same command to resume"
    ]
    run = recipe.parent / "runs" / "tiny"
    assert (run / "checkpoints" / "step-0000002" / "model.safetensors").is_file()
    assert not [p for p in run.rglob("*") if any(t in p.name for t in TEMPORARY)]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler is zoo run's only"
    resumed = CliRunner().invoke(app, ["run", str(recipe), "-q"])
    assert resumed.exit_code == 0, resumed.output
