"""Full disks, read-only and unwritable paths: one line, exit 2, earlier checkpoints intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from zoo_torch.train import TorchTrainer

from tests.conftest import RecipeWriter
from zoo_core import runs
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app


def zoo_run(recipe: Path, output: Path) -> Any:
    """``zoo run RECIPE -q --set output_dir=OUTPUT`` in this process."""
    return CliRunner().invoke(app, ["run", str(recipe), "-q", "--set", f"output_dir={output}"])


def write_index(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, starts: str, has: str) -> int:
    """The number of an uninterrupted run's first durable write starting ``starts`` with ``has`` in it."""
    trace = tmp_path / "trace.txt"
    monkeypatch.setattr(runs, "_writes", 0)
    with monkeypatch.context() as patch:
        patch.setenv("ZOO_FAULT_TRACE", str(trace))
        assert zoo_run(recipe, tmp_path / "runs" / "probe").exit_code == 0
    writes = [line.split("\t", 1)[1] for line in trace.read_text().splitlines()]
    monkeypatch.setattr(runs, "_writes", 0)
    return next(i for i, w in enumerate(writes, 1) if w.startswith(starts) and has in w)


def one_error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def assert_intact(run: Path, step: int) -> None:
    """The checkpoint of ``step`` loads (sha256-verified) and no temporary directory is left."""
    open_model_dir(run / "checkpoints" / f"step-{step:07d}").load_weights()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name or ".old-" in p.name]


def test_full_disk_at_a_checkpoint(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = write_recipe()  # 6 steps, checkpoints at 3 and 6
    at = write_index(recipe, tmp_path, monkeypatch, "fill", ".step-0000006.tmp")
    run = tmp_path / "runs" / "full"
    monkeypatch.setenv("ZOO_FAULT_ERROR_AT", f"{at}:ENOSPC")
    line = one_error_line(zoo_run(recipe, run))
    assert line == f"error: {run}: no space left on device while writing checkpoint step-6; " + (
        "earlier checkpoints are intact"
    )
    assert_intact(run, 3)
    assert not (run / "checkpoints" / "step-0000006").exists()
    monkeypatch.delenv("ZOO_FAULT_ERROR_AT")  # room again: the same command finishes the run
    assert zoo_run(recipe, run).exit_code == 0
    assert (run / "result.json").is_file()


def test_framework_error_on_a_full_disk_is_reported_as_one(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch says ``unexpected pos`` when the disk fills under torch.save; zoo says the disk is full."""
    recipe = write_recipe(checkpoints={"save_steps": 2})
    full = {"now": False}
    save_state = TorchTrainer.save_state

    def failing_save_state(self: TorchTrainer, directory: Path) -> None:
        if "step-0000004" in str(directory):
            full["now"] = True
            raise RuntimeError(
                "[enforce fail at inline_container.cc:603] . unexpected pos 46906496 vs 46906384"
            )
        save_state(self, directory)

    monkeypatch.setattr(TorchTrainer, "save_state", failing_save_state)
    monkeypatch.setattr(runs, "free_bytes", lambda path: 0 if full["now"] else 10**12)
    run = tmp_path / "runs" / "torchfull"
    line = one_error_line(zoo_run(recipe, run))
    assert line.endswith(
        "no space left on device while writing checkpoint step-4; earlier checkpoints are intact"
    )
    assert_intact(run, 3)


@pytest.mark.parametrize(
    ("starts", "has", "errno", "expected"),
    [
        (
            "write",
            "recipe.yaml",
            "EROFS",
            "read-only file system while writing the run directory; choose another",
        ),
        (
            "rename",
            "best",
            "EXDEV",
            "invalid cross-device link while writing best/; earlier checkpoints are intact",
        ),
        (
            "append",
            "metrics.jsonl",
            "EACCES",
            "permission denied while writing metrics.jsonl; earlier checkpoints",
        ),
    ],
    ids=["read-only", "cross-device", "unwritable"],
)
def test_unwritable_paths(
    write_recipe: RecipeWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    starts: str,
    has: str,
    errno: str,
    expected: str,
) -> None:
    """Injected: tests run as root, where chmod does not stop a write."""
    recipe = write_recipe()
    at = write_index(recipe, tmp_path, monkeypatch, starts, has)
    run = tmp_path / "runs" / errno
    monkeypatch.setenv("ZOO_FAULT_ERROR_AT", f"{at}:{errno}")
    line = one_error_line(zoo_run(recipe, run))
    assert line.startswith(f"error: {run}: {expected}"), line


def test_too_little_free_space_is_refused_before_training(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "free_bytes", lambda path: 5 * runs.MiB)
    run = tmp_path / "runs" / "small"
    line = one_error_line(zoo_run(write_recipe(), run))
    assert line.startswith(f"error: {run}: 5 MiB free, but a checkpoint of this model takes about "), line
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
