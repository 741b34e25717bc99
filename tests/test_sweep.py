"""``zoo sweep``: a grid end to end, resume after an interruption, two workers, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import RecipeWriter, one_error_line
from zoo_core.cli.main import app

runner = CliRunner()
GRID = ("--grid", "train.learning_rate=1e-3,3e-4", "--grid", "train.batch_size=8,16")
NAMES = {f"learning_rate={lr},batch_size={bs}" for lr in ("0.001", "0.0003") for bs in ("8", "16")}


def trainings(run_dir: Path) -> int:
    """How many times a run started training (run.log says backend=... once per start)."""
    return (run_dir / "run.log").read_text().count("backend=")


def evaluations(run_dir: Path) -> list[int]:
    """The steps of the run's dev evaluations, as metrics.jsonl records them."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if "eval" in r]


def summary(sweep_dir: Path) -> dict[str, Any]:
    return dict(json.loads((sweep_dir / "sweep.json").read_text()))


def test_a_grid_sweep_end_to_end(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    recipe = write_recipe()
    result = runner.invoke(app, ["sweep", str(recipe), *GRID, "--pruner", "none", "-q"])
    assert result.exit_code == 0, result.output
    sweep_dir = tmp_path / "runs" / "tiny-sweep"  # next to the recipe's output_dir
    trials = sweep_dir / "trials"
    assert {p.name for p in trials.iterdir()} == NAMES
    assert all((trials / name / "result.json").is_file() for name in NAMES)
    assert all(trainings(trials / name) == 1 for name in NAMES)
    done = summary(sweep_dir)
    assert [t["state"] for t in done["trials"]] == ["COMPLETE"] * 4
    best = done["best"]
    assert best["value"] == max(t["value"] for t in done["trials"])
    assert result.output.count("<- best") == 1 and "dev accuracy" in result.output
    assert f"best: trial {best['number']}" in result.output and "zoo export" in result.output
    # the value is best/'s dev metric, the model zoo export takes
    meta = json.loads((sweep_dir / best["run_dir"] / "best" / "zoo.json").read_text())
    assert best["value"] == pytest.approx(meta["metrics"]["accuracy"])

    again = runner.invoke(app, ["sweep", str(recipe), *GRID, "--pruner", "none", "-q"])
    assert again.exit_code == 0, again.output
    assert "every trial is finished" in again.output and "trial 0:" not in again.output
    assert all(trainings(trials / name) == 1 for name in NAMES)

    exported = runner.invoke(app, ["export", str(sweep_dir), "-f", "portable"])
    assert exported.exit_code == 0, exported.output
    assert "exporting the sweep's best trial" in exported.output
    assert (sweep_dir / best["run_dir"] / "export" / "width-1" / "portable" / "config.json").is_file()

    reported = runner.invoke(app, ["report", str(sweep_dir), "-o", "rep"])
    assert reported.exit_code == 0, reported.output
    pictures = {"sweep_learning_rate.png", "sweep_batch_size.png"}
    assert pictures <= {p.name for p in (tmp_path / "rep").glob("*.png")}
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Sweep" in text and "**best**" in text and all(f"]({p})" in text for p in pictures)


def test_export_without_a_source_takes_the_newest_sweep_s_best_trial(
    write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    recipe = write_recipe(output_dir="runs/tiny")
    args = ["sweep", str(recipe), "--grid", "train.learning_rate=1e-3,3e-4", "--pruner", "none", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    best = summary(tmp_path / "runs" / "tiny-sweep")["best"]["run_dir"]
    exported = runner.invoke(app, ["export", "-f", "portable"])
    assert exported.exit_code == 0, exported.output
    assert f"tiny-sweep/{best}/best" in exported.output


def test_a_sweep_section_with_tpe_and_zoo_run_ignoring_it(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    section = {
        "grid": {"train.learning_rate": ["1e-3", 3.0e-4], "train.seed": [1, 2]},
        "sampler": "tpe",
        "trials": 2,
        "pruner": "none",
    }
    recipe = write_recipe(sweep=section)
    result = runner.invoke(app, ["sweep", str(recipe), "-q"])
    assert result.exit_code == 0, result.output
    done = summary(tmp_path / "runs" / "tiny-sweep")
    assert len(done["trials"]) == 2 and done["sampler"] == "tpe"
    assert done["grid"]["train.learning_rate"] == [0.001, 0.0003]  # "1e-3" read as --set reads it
    assert runner.invoke(app, ["run", str(recipe), "-q"]).exit_code == 0  # zoo run: the plain recipe


def test_an_interrupted_sweep_resumes_without_repeating_finished_trials(
    write_recipe: RecipeWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the second trial, after its step-3 checkpoint; the re-run goes on from there."""
    from zoo_core.recipes.kinds import KINDS, KindSpec
    from zoo_core.runners.loop import evaluation_listener
    from zoo_core.sweep import study

    real = KINDS["finetune"].load_runner()
    calls: list[Path] = []

    def interrupted_second(recipe: Any, backend_name: str, **kwargs: Any) -> Any:
        calls.append(recipe.run_dir)

        def stop(step: int, metrics: dict[str, float]) -> None:
            if len(calls) == 2 and step == 3:
                raise KeyboardInterrupt

        with evaluation_listener(stop):
            return real(recipe, backend_name, **kwargs)

    spec = KINDS["finetune"]
    patched = KindSpec(spec.recipe, "x:y", spec.planner, spec.capability, spec.model_field)
    monkeypatch.setattr(KindSpec, "load_runner", lambda self: interrupted_second)
    monkeypatch.setattr(study, "KINDS", {**KINDS, "finetune": patched})
    recipe = write_recipe()
    args = ["sweep", str(recipe), *GRID, "--pruner", "none", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "run the same command to resume" in result.stderr
    first, second = calls
    assert (first / "result.json").is_file() and not (second / "result.json").exists()
    assert evaluations(second) == [3]
    monkeypatch.undo()

    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    trials = tmp_path / "runs" / "tiny-sweep" / "trials"
    assert {p.name for p in trials.iterdir()} == NAMES
    assert all((trials / name / "result.json").is_file() for name in NAMES)
    assert trainings(first) == 1, "the finished trial was not run again"
    assert trainings(second) == 2 and evaluations(second) == [3, 6], "the interrupted one resumed"
    assert all(trainings(trials / name) == 1 for name in NAMES - {first.name, second.name})
    done = summary(tmp_path / "runs" / "tiny-sweep")
    assert sorted(t["run_dir"] for t in done["trials"]) == sorted(f"trials/{n}" for n in NAMES)
    assert {t["state"] for t in done["trials"]} == {"COMPLETE"}


def test_two_workers_share_a_grid(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    """Two zoo sweep processes on one SQLite storage: the 4 trials between them, none run twice."""
    recipe = write_recipe(
        train={"max_steps": 12, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 4}
    )
    command = [sys.executable, "-m", "zoo_core", "sweep", str(recipe), *GRID, "--pruner", "none", "-q"]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"{stdout}\n{stderr}"
    trials = tmp_path / "runs" / "tiny-sweep" / "trials"
    assert {p.name for p in trials.iterdir()} == NAMES
    assert all(trainings(trials / name) == 1 for name in NAMES), "no trial trained twice"
    started = [
        [line.split("(")[-1] for line in stdout.splitlines() if line.startswith("trial ") and "(" in line]
        for stdout, _ in outputs
    ]
    assert all(started), f"both workers took trials: {started}"
    everything = started[0] + started[1]
    assert len(everything) == 4 and len(set(everything)) == 4, started
    done = summary(tmp_path / "runs" / "tiny-sweep")
    assert len(done["trials"]) == 4 and {t["state"] for t in done["trials"]} == {"COMPLETE"}


BAD_INPUTS: list[tuple[list[str], Callable[[str], bool]]] = [
    (["--grid", "train.learnin_rate=1e-3,3e-4"], lambda e: "train.learnin_rate: unknown key" in e),
    (["--grid", "train.batch_size=16,abc"], lambda e: "(--grid train.batch_size)" in e and "'abc'" in e),
    ([], lambda e: "nothing to sweep" in e),
    (["--grid", "train.batch_size="], lambda e: "train.batch_size: no values" in e),
    (["--grid", "train.batch_size=8,8"], lambda e: "value 8 given twice" in e),
    (["--grid", "output_dir=a,b"], lambda e: "sets output_dir itself" in e),
    (
        ["--grid", "train.batch_size=8,16", "--metric", "f1"],
        lambda e: "--metric f1" in e and "expected one of accuracy" in e,
    ),
    (["--grid", "train.batch_size=8,16", "--trials", "3"], lambda e: "only 2 points" in e),
    (["--grid", "train.batch_size=8,16", "--sampler", "random"], lambda e: "--sampler 'random'" in e),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUTS)
def test_bad_input_is_one_line_before_any_trial(
    write_recipe: RecipeWriter, tmp_path: Path, args: list[str], says: Callable[[str], bool]
) -> None:
    result = runner.invoke(app, ["sweep", str(write_recipe()), *args])
    line = one_error_line(result)
    assert says(line), line
    assert not (tmp_path / "runs").exists(), "no trial started"


def test_a_bad_sweep_section_is_one_line(write_recipe: RecipeWriter) -> None:
    result = runner.invoke(app, ["sweep", str(write_recipe(sweep={"grid": {}, "trails": 2}))])
    assert "sweep.trails: unknown key" in one_error_line(result)


def test_the_cli_does_not_import_optuna() -> None:
    code = "import sys, zoo_core.cli.main; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('optuna', 'sqlalchemy', 'torch', 'paddle', 'mindspore')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
