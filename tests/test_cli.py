"""The ``zoo`` command through typer's CliRunner, on a tiny model and real SST-2 rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, RecipeWriter
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.recipes.bundled import BUNDLED_DIR

runner = CliRunner()


def zoo(*args: str) -> tuple[int, str, str]:
    """Run ``zoo ARGS``; return the exit code, stdout and stderr."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_help_and_backends_import_no_framework() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from zoo_core.cli.main import app\n"
        "for args in (['--help'], ['backends'], ['models'], ['recipes']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "print(sorted(m for m in ('torch', 'paddle', 'mindspore', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_backends_lists_torch_with_devices_precisions_and_capabilities() -> None:
    code, out, _ = zoo("backends")
    assert code == 0
    row = next(line for line in out.splitlines() if " torch " in line)
    assert "zoo-torch" in row and "cpu (fp32" in row
    assert "bf16" in out and "gpu (" in out  # the devices column may wrap
    assert "finetune" in out and "export" in out  # the capabilities column may wrap


def test_models_lists_the_catalog_with_parameter_counts() -> None:
    code, out, _ = zoo("models")
    assert code == 0
    assert "minilm-l6-h384" in out and "22.7M" in out
    assert "tinybert-4l-312" in out and "bert-l2-h128" in out and "bert-l12-h768" in out


def test_recipes_lists_the_bundled_recipes() -> None:
    code, out, _ = zoo("recipes")
    assert code == 0
    for task in ("sst2", "cola", "mrpc", "stsb", "rte", "wnli"):
        assert f"finetune_{task}" in out


def test_bundled_recipes_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # recipes name their data data/..., here the project's own data/
    recipes = sorted(str(p) for p in BUNDLED_DIR.glob("*.yaml"))
    assert len(recipes) >= 6
    code, out, err = zoo("validate", "--backend", "torch", *recipes)
    assert code == 0, err
    assert out.count(": ok") == len(recipes)


def test_run_writes_the_run_directory_and_prints_the_metric_last(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    code, out, err = zoo("run", str(recipe))
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("dev accuracy ")
    run = recipe.parent / "runs" / "tiny"
    for name in ("recipe.yaml", "run.log", "metrics.jsonl", "result.json", "best/model.safetensors"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
    assert [r["step"] for r in records if "eval" in r] == [3, 6]
    assert all({"lr", "samples_per_s", "grad_norm"} <= set(r) for r in records if "loss" in r)
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 6 and f"{result['final']['accuracy']:.4f}" in last
    assert 50 < result["peak_memory_mb"] < 16 * 1024  # this process's peak RSS: a framework and a tiny model
    # keep_last=2 step checkpoints: steps 3 and 6; best/ is a portable checkpoint with zoo.json
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    best = open_model_dir(run / "best")
    assert best.meta["task"] == "sst2" and best.meta["backend"] == "torch"
    assert best.meta["metrics"]["accuracy"] == result["best"]
    assert not (run / "best" / "optimizer.pt").exists()


def test_run_again_reuses_the_finished_run(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    assert zoo("run", str(recipe))[0] == 0
    code, out, _ = zoo("run", str(recipe))
    assert code == 0 and "already holds this finished run" in out
    code, out, _ = zoo("run", str(recipe), "--set", "train.max_steps=8")
    assert code == 0
    result = json.loads((recipe.parent / "runs" / "tiny" / "result.json").read_text())
    assert result["steps"] == 8 and result["resumed_from"] == 6


def test_set_overrides_fields(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    code, _, err = zoo("run", str(recipe), "--set", "train.max_steps=2", "--set", "eval.every_steps=1", "-q")
    assert code == 0, err
    saved = (recipe.parent / "runs" / "tiny" / "recipe.yaml").read_text()
    assert "max_steps: 2" in saved and "every_steps: 1" in saved


def test_eval_and_predict_from_the_best_checkpoint(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    recipe = write_recipe()
    assert zoo("run", str(recipe), "-q")[0] == 0
    run = recipe.parent / "runs" / "tiny"
    best = json.loads((run / "result.json").read_text())["best"]
    code, out, err = zoo("eval", str(run / "best"), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["examples"] == 64 and metrics["accuracy"] == pytest.approx(best, abs=1e-9)

    sentences = tmp_path / "input.txt"
    sentences.write_text("a gorgeous , witty , seductive movie .\nthe worst film of the year\n\nflat\n")
    code, out, err = zoo("predict", str(run / "best"), str(sentences))
    assert code == 0, err
    assert len(out.splitlines()) == 4 and out.splitlines()[2] == "" and set(out.split()) <= {"0", "1"}
    code, _, _ = zoo("predict", str(run / "best"), str(sentences), "--output", str(tmp_path / "pred.txt"))
    assert code == 0 and (tmp_path / "pred.txt").read_text() == out


def test_eval_refuses_a_checkpoint_for_another_task(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    assert zoo("run", str(recipe), "-q")[0] == 0
    code, _, err = zoo("eval", str(recipe.parent / "runs" / "tiny" / "best"), "--task", "mnli")
    assert code == 2
    assert "labels ['0', '1'] do not match task mnli" in err


def test_restart_starts_over(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    assert zoo("run", str(recipe), "-q")[0] == 0
    run = recipe.parent / "runs" / "tiny"
    first = open_model_dir(run / "best").load_weights()
    (run / "marker").write_text("old")
    assert zoo("run", str(recipe), "-q", "--restart")[0] == 0
    assert not (run / "marker").exists()
    second = open_model_dir(run / "best").load_weights()
    for name, value in first.items():  # seeded: the same run again
        np.testing.assert_array_equal(second[name], value, err_msg=name)
