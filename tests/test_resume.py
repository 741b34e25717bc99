"""Interrupted runs: earlier checkpoints stay intact, and resuming gives the uninterrupted result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.recipes.loader import load_recipe
from zoo_core.runners.finetune import run_finetune
from zoo_core.trainers import Training

QUIET = Console(quiet=True)


def interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th training step raise KeyboardInterrupt (as Ctrl-C would)."""
    original = Training.step
    calls = {"n": 0}

    def step(self: Training, batch: Any, lr: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(self, batch, lr)

    monkeypatch.setattr(Training, "step", step)


def final_weights(run_dir: Path, step: int) -> dict[str, np.ndarray]:
    return open_model_dir(run_dir / "checkpoints" / f"step-{step:07d}").load_weights()


def test_resumed_run_matches_an_uninterrupted_one(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_recipe(
        train={"max_steps": 8}, eval={"every_steps": 4}, checkpoints={"save_steps": 2, "keep_last": 3}
    )
    straight = load_recipe(path, [f"output_dir={tmp_path / 'straight'}"])
    run_finetune(straight, "torch", console=QUIET, progress=False)

    recipe = load_recipe(path)
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(recipe, "torch", console=QUIET, progress=False)
    run = recipe.run_dir
    assert not (run / "result.json").exists()
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-0000002", "step-0000004"]

    result = run_finetune(recipe, "torch", console=QUIET, progress=False)
    assert result.resumed_from == 4 and result.steps == 8
    expected, got = final_weights(tmp_path / "straight", 8), final_weights(run, 8)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert result.final == pytest.approx(
        open_model_dir(tmp_path / "straight" / "checkpoints" / "step-0000008").meta["metrics"]
    )


def test_ctrl_c_exits_130_and_says_how_to_resume(
    write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = write_recipe(checkpoints={"save_steps": 2})
    interrupt_at(monkeypatch, 4)
    result = CliRunner().invoke(app, ["run", str(recipe), "-q"])
    assert result.exit_code == 130
    assert "run the same command to resume" in result.stderr
    run = recipe.parent / "runs" / "tiny"
    assert (run / "checkpoints" / "step-0000002" / "model.safetensors").is_file()
    assert not list(run.rglob("*.tmp*")), "no temporary files may be left behind"
