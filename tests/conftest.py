"""Shared fixtures: a tiny model directory, a small slice of real SST-2, recipe files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from zoo_core.checkpoint import write_checkpoint
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "data" / "glue" / "SST-2"

#: a 2-layer BERT over the real bert-base-uncased vocabulary, small enough to train in seconds
TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test caches tokenised data in its own folder, has its own (empty) data root and cwd."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data-root"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A portable checkpoint of :data:`TINY` with random weights and no task head of note."""
    return write_checkpoint(tmp_path / "tiny-bert", TINY, init_weights(TINY, 0), BUNDLED_VOCAB, {})


@pytest.fixture
def sst2_dir(tmp_path: Path) -> Path:
    """The first 160 training and 64 dev rows of the real SST-2 files."""
    out = tmp_path / "SST-2"
    out.mkdir()
    for split, rows in (("train", 160), ("dev", 64)):
        lines = (SST2 / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (out / f"{split}.tsv").write_text("".join(lines[: rows + 1]), encoding="utf-8")
    return out


RecipeWriter = Callable[..., Path]


def write_recipe_file(path: Path, recipe: dict[str, Any], changes: dict[str, Any]) -> Path:
    """``recipe`` with ``changes`` merged in (a mapping into a section, else replaced) as YAML at ``path``."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def one_error_line(result: Any) -> str:
    """The single ``error:`` line of a CliRunner result that exited 2 without a traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return str(lines[0])


@pytest.fixture
def write_recipe(tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path) -> RecipeWriter:
    """``write_recipe(name="x", **sections)``: a tiny SST-2 fine-tune recipe file, sections merged in."""

    def write(name: str = "tiny", **changes: Any) -> Path:
        recipe: dict[str, Any] = {
            "kind": "finetune",
            "name": name,
            "task": "sst2",
            "model": str(tiny_model_dir),
            "data": {"dir": str(sst2_dir), "max_seq_length": 32},
            "train": {"max_steps": 6, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2},
            "eval": {"every_steps": 3, "batch_size": 32},
            "output_dir": str(tmp_path / "runs" / name),
        }
        return write_recipe_file(tmp_path / f"{name}.yaml", recipe, changes)

    return write


@pytest.fixture
def tiny_run(write_recipe: RecipeWriter, tmp_path: Path) -> Path:
    """A finished tiny SST-2 fine-tune run (torch) at ``runs/tiny`` under the cwd (tmp_path)."""
    from typer.testing import CliRunner

    from zoo_core.cli.main import app

    result = CliRunner().invoke(app, ["run", str(write_recipe(output_dir="runs/tiny")), "-q"])
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / "tiny"


#: the training section of the tiny width recipes
WIDTH_TRAIN = {"max_steps": 4, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2}


@pytest.fixture
def width_recipe(tmp_path: Path, write_recipe: RecipeWriter, sst2_dir: Path) -> Callable[..., Path]:
    """``width_recipe(**changes)``: a tiny width recipe (runs/dyna) taught by the tiny recipe "teacher"."""
    teacher = write_recipe(name="teacher")

    def write(**changes: Any) -> Path:
        recipe: dict[str, Any] = {
            "kind": "width",
            "name": "dyna",
            "task": "sst2",
            "teacher": str(teacher),
            "data": {"dir": str(sst2_dir), "max_seq_length": 32},
            "width": {"width_mult_list": [1.0, 0.75, 0.5], "importance": {"examples": 32}},
            "train": WIDTH_TRAIN,
            "eval": {"every_steps": 2, "batch_size": 32},
            "output_dir": str(tmp_path / "runs" / "dyna"),
        }
        recipe.update(changes)
        path = tmp_path / "width.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    return write
