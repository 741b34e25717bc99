"""Non-finite training stops the run with one line naming the step; best/ keeps the last good model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.errors import TrainingError
from zoo_core.runners.loop import check_finite, nonfinite_reason


def test_nonfinite_reason_names_the_first_bad_value() -> None:
    assert nonfinite_reason({"loss": 0.5, "grad_norm": 2.0}) is None
    assert nonfinite_reason({"loss": float("nan"), "grad_norm": 2.0}) == "loss is nan"
    assert nonfinite_reason({"loss": 0.5, "grad_norm": float("inf")}) == "grad_norm is inf"
    with pytest.raises(TrainingError, match=r"^step 5: loss is nan; stopping\. best/ keeps step 4's model"):
        check_finite(5, {"loss": float("nan")}, 4)


def test_huge_learning_rate_stops_with_one_line_and_exit_2(
    write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    # evaluate (and so checkpoint) after every step: best/ exists before the loss goes bad
    recipe = write_recipe(train={"learning_rate": 1e6}, eval={"every_steps": 1})
    result = CliRunner().invoke(app, ["run", str(recipe), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = re.match(
        r"error: step (\d+): (loss|grad_norm) is (nan|inf); stopping\. best/ keeps step (\d+)'s", lines[0]
    )
    assert match, lines[0]
    bad, kept = int(match[1]), int(match[4])
    assert kept < bad
    run = tmp_path / "runs" / "tiny"
    best = open_model_dir(run / "best")
    assert best.meta["step"] == kept
    assert all(np.isfinite(w).all() for w in best.load_weights().values())
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").iterdir())
    assert steps and max(steps) < bad, "no checkpoint of a non-finite step"
    for step in steps:
        weights = open_model_dir(run / "checkpoints" / f"step-{step:07d}").load_weights()
        assert all(np.isfinite(w).all() for w in weights.values()), step
    assert not (run / "result.json").exists()
    assert f"step {bad}: " in (run / "run.log").read_text()
