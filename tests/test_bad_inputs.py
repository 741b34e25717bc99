"""Bad input: one line on stderr naming what is wrong, exit code 2, nothing half-written.

Each case breaks one thing in an otherwise good tiny run and checks that ``zoo run``
(or ``zoo eval``) refuses it before creating the run directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.cli.main import app
from zoo_core.plugins import KNOWN_BACKENDS

runner = CliRunner()


def refused(args: list[str], *expected: str) -> str:
    """Run zoo, check exit code 2 and a single ``error:`` line containing ``expected``; return it."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def run_refused(recipe: Path, *expected: str, extra: tuple[str, ...] = ()) -> None:
    """``zoo run recipe`` is refused and leaves no run directory behind."""
    refused(["run", str(recipe), *extra], *expected)
    assert not (recipe.parent / "runs" / "tiny").exists(), "a refused run must not create its run directory"


def test_unknown_recipe_key(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe(trian={"batch_size": 8})
    run_refused(recipe, f"{recipe}:", "trian: unknown key")


def test_unknown_nested_key_names_its_line(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe(train={"bach_size": 8})
    line = next(i for i, text in enumerate(recipe.read_text().splitlines(), 1) if "bach_size" in text)
    run_refused(recipe, f"{recipe}:{line}: train.bach_size: unknown key")


def test_wrong_value_type(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(train={"batch_size": "lots"}), "train.batch_size", "integer", "'lots'")


def test_wrong_value_type_from_set(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(), "(--set train.learning_rate)", extra=("--set", "train.learning_rate=fast"))


def test_malformed_set() -> None:
    refused(["run", "finetune_sst2", "--set", "train.batch_size"], "expected PATH=VALUE")


def test_missing_recipe_file(tmp_path: Path) -> None:
    refused(["run", str(tmp_path / "nope.yaml")], "nope.yaml: recipe file not found")


def test_recipe_that_is_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: finetune\nname: [unclosed\n")
    refused(["run", str(bad)], f"{bad}:", "not valid YAML")


def test_missing_data_directory(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    run_refused(write_recipe(data={"dir": str(tmp_path / "nowhere")}), "nowhere does not exist")


def test_unknown_task(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(task="sst3"), "task: unknown task 'sst3'", "known tasks: sst2")


def test_unknown_backend(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(), "unknown backend 'jax'", extra=("--backend", "jax"))


def test_backend_not_installed(write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KNOWN_BACKENDS, "oneflow", "pip install zoo-oneflow")
    run_refused(
        write_recipe(),
        "backend 'oneflow' is not installed",
        "pip install zoo-oneflow",
        extra=("-b", "oneflow"),
    )


def test_device_the_backend_lacks(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(device="ascend"), "backend 'torch' does not support device 'ascend'")


def test_bad_backend_option(write_recipe: RecipeWriter) -> None:
    run_refused(write_recipe(backend_options={"torch": {"threads": "two"}}), "backend_options.torch.threads")


def _edit_train_file(sst2_dir: Path, line: int, text: str) -> None:
    lines = (sst2_dir / "train.tsv").read_text().splitlines(keepends=True)
    lines[line - 1] = text
    (sst2_dir / "train.tsv").write_text("".join(lines))


def test_malformed_tsv_row(write_recipe: RecipeWriter, sst2_dir: Path) -> None:
    _edit_train_file(sst2_dir, 5, "a row without a label column\n")
    run_refused(write_recipe(), "train.tsv:5: expected at least 2 tab-separated columns, found 1")


def test_label_outside_the_label_set(write_recipe: RecipeWriter, sst2_dir: Path) -> None:
    _edit_train_file(sst2_dir, 7, "a fine film\t2\n")
    run_refused(write_recipe(), "train.tsv:7: label '2' is not one of 0, 1 for task sst2")


def test_missing_vocab(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    (tiny_model_dir / "vocab.txt").unlink()
    run_refused(write_recipe(), "vocab.txt: vocabulary file not found")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_checkpoint(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    _truncate(tiny_model_dir / "model.safetensors")
    run_refused(write_recipe(), "model.safetensors: sha256 does not match zoo.json")


def test_truncated_checkpoint_without_zoo_json(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    (tiny_model_dir / "zoo.json").unlink()  # a plain Hugging Face directory: no checksum to compare
    _truncate(tiny_model_dir / "model.safetensors")
    run_refused(write_recipe(), "model.safetensors: unreadable safetensors file")


def test_unreadable_checkpoint_in_eval(tiny_model_dir: Path) -> None:
    (tiny_model_dir / "zoo.json").write_text("{not json")
    refused(["eval", str(tiny_model_dir), "--task", "sst2"], "zoo.json: unreadable")


def test_weights_that_do_not_fit_the_config(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    (tiny_model_dir / "zoo.json").unlink()
    path = tiny_model_dir / "model.safetensors"
    weights = load_file(str(path))
    name = "bert.encoder.layer.1.intermediate.dense.weight"
    weights[name] = np.zeros((48, 32), np.float32)
    save_file(weights, str(path))
    run_refused(write_recipe(), name, "(48, 32)", "(64, 32)")


def test_output_directory_of_another_recipe(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    other = write_recipe(name="other", output_dir=str(tmp_path / "shared"))
    assert runner.invoke(app, ["run", str(other), "-q"]).exit_code == 0
    before = sorted(p.name for p in (tmp_path / "shared").rglob("*"))
    mine = write_recipe(output_dir=str(tmp_path / "shared"))
    refused(["run", str(mine)], "holds a run of recipe 'other'")
    refused(["run", str(mine), "--restart"], "holds a run of recipe 'other'")
    assert sorted(p.name for p in (tmp_path / "shared").rglob("*")) == before


def test_output_directory_that_is_not_a_run(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    refused(["run", str(write_recipe(output_dir=str(tmp_path / "precious")))], "is not a zoo run directory")
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "years of work"


def test_same_recipe_with_other_settings(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    assert runner.invoke(app, ["run", str(recipe), "-q"]).exit_code == 0
    refused(["run", str(recipe), "--set", "train.learning_rate=0.5"], "other settings (train.learning_rate)")


def test_validate_reports_every_problem_at_once(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    recipe = write_recipe(task="sst3", train={"batch_size": 0, "warmup_ratio": 2}, data={"dir": "gone"})
    result = runner.invoke(app, ["validate", str(recipe), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    for text in (
        "task: unknown task",
        "train.batch_size",
        "train.warmup_ratio",
        "missing.yaml: recipe file not found",
    ):
        assert any(text in line for line in lines), (text, lines)
    assert all(line.startswith("error: ") for line in lines)


def test_plugin_that_fails_to_import(write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    import zoo_core.plugins as plugins

    broken = md.EntryPoint(name="broken", value="zoo_no_such_module_for_tests", group="zoo")
    monkeypatch.setattr(plugins, "_entry_points", lambda: {"broken": broken})
    run_refused(
        write_recipe(),
        "backend plugin 'broken' (zoo_no_such_module_for_tests) failed to import",
        "ModuleNotFoundError",
        extra=("--backend", "broken"),
    )
