"""``zoo run --nproc``: topology checks, the launcher call, worker errors, micro-batches.

Framework launchers themselves are exercised by each backend's conformance suite
(zoo_core/testing/parallel.py); these tests need no framework.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import RecipeWriter
from zoo_core.backend import BackendSpec
from zoo_core.data.batching import micro_batches
from zoo_core.distributed import DATA_PARALLEL_ENV, LAUNCH_DIR_ENV, Launcher, LaunchPlan
from zoo_core.errors import BackendError, RecipeError
from zoo_core.launch import WORKER_SCRIPT, Topology, WorkerError, plan_launch, run_launcher, worker_args
from zoo_core.recipes.loader import load_recipe
from zoo_core.testing import tiny_batch


def test_micro_batches_split_trim_and_weigh() -> None:
    batch = tiny_batch(seed=0, batch_size=7, max_len=12)
    parts = micro_batches(batch, 3)
    assert [len(m) for m, _ in parts] == [3, 2, 2]
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    assert [w for _, w in parts] == pytest.approx([3 / 7, 2 / 7, 2 / 7])
    for micro, _ in parts:
        assert micro.input_ids.shape[1] == micro.attention_mask.sum(axis=1).max()  # trimmed
    joined = np.concatenate([m.indices for m, _ in parts])  # type: ignore[misc]
    np.testing.assert_array_equal(joined, batch.indices)  # type: ignore[arg-type]
    assert micro_batches(batch, 1) == [(batch, 1.0)]
    assert len(micro_batches(tiny_batch(batch_size=2), 4)) == 2  # no empty micro-batches
    with pytest.raises(ValueError):
        micro_batches(batch, 0)


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        (Topology(0), "--nproc"),
        (Topology(2, nnodes=0), "--nnodes"),
        (Topology(2, nnodes=2, node_rank=2, master="h:1"), "--node-rank"),
        (Topology(2, nnodes=2), "--master ADDR:PORT is required"),
        (Topology(2, master="10.0.0.1"), "--master: expected ADDR:PORT"),
        (Topology(2, master="10.0.0.1:http"), "--master: expected ADDR:PORT"),
    ],
)
def test_bad_topologies_are_refused(topology: Topology, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        topology.check()


def test_one_machine_picks_a_free_local_port() -> None:
    addr, port = Topology(2).check()
    assert addr == "127.0.0.1" and 0 < port < 65536
    assert Topology(2, nnodes=2, node_rank=1, master="node0:29400").check() == ("node0", 29400)


def test_workers_get_the_recipe_and_overrides_never_restart() -> None:
    args = worker_args("/r.yaml", "torch", ["train.batch_size=4"], quiet=True)
    assert args == ("run", "/r.yaml", "--backend", "torch", "--set", "train.batch_size=4", "--quiet")


def spec(launcher: Launcher | None) -> BackendSpec:
    """A backend spec that only has a launcher (or none)."""
    return BackendSpec(
        name="fake", factory=lambda device, options: None, framework="zoo-core", launcher=launcher
    )  # type: ignore[arg-type,return-value]


def test_a_backend_without_launcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="no data-parallel launcher"):
        plan_launch(spec(None), "cpu", Topology(2), ("run",), tmp_path)


def test_the_launcher_gets_the_plan(tmp_path: Path) -> None:
    seen: list[LaunchPlan] = []

    def command(plan: LaunchPlan) -> list[str]:
        seen.append(plan)
        return ["launch", str(plan.world_size)]

    plan, argv = plan_launch(
        spec(Launcher(command)), "cpu", Topology(3, nnodes=2, master="h:5"), ("run",), tmp_path
    )
    assert argv == ["launch", "6"] and seen == [plan]
    assert plan.script == WORKER_SCRIPT and plan.args == ("run",) and plan.log_dir == tmp_path
    assert (plan.master_addr, plan.master_port, plan.node_rank) == ("h", 5, 0)


def test_a_failed_rank_becomes_the_error(tmp_path: Path) -> None:
    script = (
        "import os, pathlib, sys\n"
        f"assert os.environ['{DATA_PARALLEL_ENV}'] == '1'\n"
        f"folder = pathlib.Path(os.environ['{LAUNCH_DIR_ENV}'])\n"
        "(folder / 'rank-1.error').write_text('DataError: bad row 7\\n')\n"
        "print('noise', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    said: list[str] = []
    with pytest.raises(
        WorkerError, match=r"rank 1: DataError: bad row 7 \(every rank's log and the launcher's: "
    ):
        run_launcher([sys.executable, "-c", script], tmp_path, said.append)
    assert said[0].startswith(f"launching: {DATA_PARALLEL_ENV}=1 ")
    assert "noise" in (tmp_path / "launcher.log").read_text()


def test_a_launcher_failing_without_a_rank_error(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="the launcher exited with code 4"):
        run_launcher([sys.executable, "-c", "raise SystemExit(4)"], tmp_path, lambda _: None)


def test_a_worker_records_its_error_and_only_rank_0_prints(tmp_path: Path) -> None:
    env = {**os.environ, "RANK": "1", LAUNCH_DIR_ENV: str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(WORKER_SCRIPT), "run", "missing.yaml"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == "" and done.stderr == ""
    assert "missing.yaml: recipe file not found" in (tmp_path / "rank-1.error").read_text()
    assert "error: missing.yaml: recipe file not found" in (tmp_path / "rank-1.log").read_text()


def test_accumulation_is_a_recipe_field(write_recipe: RecipeWriter) -> None:
    recipe = load_recipe(write_recipe(), ["train.gradient_accumulation_steps=4"])
    assert recipe.train.gradient_accumulation_steps == 4
    with pytest.raises(RecipeError, match="gradient_accumulation_steps"):
        load_recipe(write_recipe(), ["train.gradient_accumulation_steps=0"])
