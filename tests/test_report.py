"""``zoo report``: a Markdown table and the plots, from the files runs and ``zoo bench`` write."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.cli.main import app
from zoo_core.report.history import load_history
from zoo_core.report.plots import pareto

runner = CliRunner()
QUICK = ("--batch-sizes", "2", "--seq-lens", "8", "--warmup", "0", "--repeats", "2", "--runtimes", "onnx")


def test_report_of_a_teacher_and_its_width_run(width_recipe: Callable[..., Path], tmp_path: Path) -> None:
    recipe = width_recipe(width={"width_mult_list": [1.0, 0.5], "importance": {"examples": 32}})
    assert runner.invoke(app, ["run", str(recipe), "-q"]).exit_code == 0
    for run, widths in (("runs/teacher", "1"), ("runs/dyna", "1,0.5")):
        result = runner.invoke(app, ["bench", run, "--widths", widths, *QUICK])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", "runs/teacher", "runs/dyna", "-o", "out"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    pictures = {
        "training.png",
        "dev_metric.png",
        "metric_vs_width.png",
        "latency_vs_width.png",
        "frontier.png",
    }
    assert {p.name for p in out.glob("*.png")} == pictures
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pictures)
    text = (out / "report.md").read_text()
    assert all(f"]({p})" in text for p in pictures)
    dyna = json.loads((tmp_path / "runs" / "dyna" / "result.json").read_text())["final"]
    assert f"{dyna['accuracy@0.5']:.4f} @0.5" in text and "| dyna | width | torch |" in text
    assert "| teacher | finetune | torch | accuracy" in text and "MiB |" in text


def test_report_without_bench_says_what_would_add_latency(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    assert runner.invoke(app, ["run", str(write_recipe(output_dir="runs/tiny")), "-q"]).exit_code == 0
    assert runner.invoke(app, ["report", "runs/tiny"]).exit_code == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "![Training loss and learning rate](training.png)" in text
    assert "needs `zoo bench RUN --widths" in text and not (tmp_path / "report" / "frontier.png").exists()


def test_distill_stages_are_laid_end_to_end(tmp_path: Path) -> None:
    run = tmp_path / "student"
    for i, (stage, steps) in enumerate((("intermediate", 4), ("prediction", 3)), start=1):
        folder = run / f"stage-{i}-{stage}"
        folder.mkdir(parents=True)
        lines = [{"step": s, "loss": 1.0 / s, "lr": 0.1} for s in range(1, steps + 1)]
        lines.append({"step": steps, "eval": {"accuracy": 0.5 + i / 10}})
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{trunc")
    (run / "result.json").write_text(json.dumps({"main_metric": "accuracy", "final": {"accuracy": 0.7}}))
    history = load_history(run)
    assert [r["step"] for r in history.train] == [1, 2, 3, 4, 5, 6, 7]
    assert history.stage_starts == [(4, "prediction")]
    assert history.evals == [(4, {"accuracy": 0.6}), (7, {"accuracy": 0.7})]
    assert history.metric_by_width() == {1.0: 0.7}


def test_unfinished_runs_and_missing_matplotlib_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "half").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "half")])
    assert result.exit_code == 2 and "not a finished run (no result.json)" in result.stderr
    (tmp_path / "half" / "result.json").write_text(json.dumps({"final": {"accuracy": 0.5}}))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(app, ["report", str(tmp_path / "half")])
    assert result.exit_code == 2 and "pip install 'zoo-core[report]'" in result.stderr


def test_pareto_keeps_models_nothing_beats() -> None:
    points = [(10.0, 0.80, "a"), (12.0, 0.79, "b"), (15.0, 0.85, "c"), (20.0, 0.84, "d"), (30.0, 0.90, "e")]
    assert [p[2] for p in pareto(points)] == ["a", "c", "e"]


def test_int8_exports_join_the_frontier_with_their_own_metric() -> None:
    from zoo_core.report.history import RunHistory
    from zoo_core.report.plots import frontier_points

    def row(width: float, runtime: str, ms: float, metric: float | None = None) -> dict[str, object]:
        return {
            "width": width,
            "runtime": runtime,
            "batch_size": 32,
            "seq_len": 64,
            "median_ms": ms,
            "metric": metric,
        }

    run = RunHistory(
        "dyna", Path("runs/dyna"), "width", "torch", "sst2",
        result={"main_metric": "accuracy", "final": {"accuracy@1": 0.90, "accuracy@0.5": 0.85}},
        bench=[
            row(1.0, "onnxruntime", 190.0),
            row(0.5, "onnxruntime", 95.0),
            row(1.0, "onnxruntime-int8", 75.0, 0.89),
            row(0.5, "onnxruntime-int8", 46.0, 0.84),
        ],
    )  # fmt: skip
    points = sorted(frontier_points([run]))
    assert points == [
        (46.0, 0.84, "dyna @0.5 int8"),
        (75.0, 0.89, "dyna @1 int8"),
        (95.0, 0.85, "dyna @0.5"),
        (190.0, 0.90, "dyna @1"),
    ]
    assert [p[2] for p in pareto(points)] == ["dyna @0.5 int8", "dyna @1 int8", "dyna @1"]
