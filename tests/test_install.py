"""What an installed zoo needs beyond the repository: the version, a plugin's core range,
recipes shipped as package data (``zoo recipes --copy``), the data root and ``zoo data prepare``.

Built wheels in a fresh environment are tests/test_wheels.py's.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import zoo_core
from tests.conftest import REPO, RecipeWriter, one_error_line
from zoo_core.cli.main import app
from zoo_core.datasets import DATASETS, data_root, prepare, resolve_data_path
from zoo_core.errors import DataError, IncompatiblePluginError
from zoo_core.plugins import get_backend_spec, list_backends
from zoo_core.recipes.bundled import BUNDLED_DIR, find_recipe
from zoo_core.recipes.loader import load_recipe

runner = CliRunner()
GLUE = REPO / "data" / "glue"


def invoke(*args: str | Path) -> tuple[int, str, str]:
    """Run zoo in-process: exit code, stdout, stderr."""
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


# ---- the version: written once --------------------------------------------------------------
def test_the_version_is_zoo_core_dunder_version() -> None:
    assert md.version("zoo-core") == zoo_core.__version__
    assert invoke("--version")[1].strip() == f"zoo {zoo_core.__version__}"
    for plugin in ("zoo-torch", "zoo-paddle", "zoo-mindspore"):
        requires = md.requires(plugin) or []
        assert "zoo-core<0.2,>=0.1" in requires or "zoo-core>=0.1,<0.2" in requires, (plugin, requires)


# ---- a plugin built for another core ----------------------------------------------------------
def test_a_plugin_for_another_core_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, write_recipe: RecipeWriter
) -> None:
    monkeypatch.setattr(zoo_core, "__version__", "0.2.0")
    with pytest.raises(IncompatiblePluginError) as exc:
        get_backend_spec("torch")
    message = str(exc.value)
    assert "\n" not in message and exc.value.exit_code == 2
    assert "zoo-torch 0.1.0 ('torch') requires zoo-core<0.2,>=0.1" in message
    assert "but zoo-core 0.2.0 is installed" in message
    assert "torch" not in [b.spec.name for b in list_backends()]
    line = one_error_line(runner.invoke(app, ["run", str(write_recipe()), "--backend", "torch"]))
    assert "zoo-core 0.2.0 is installed" in line
    code, _, err = invoke("backends")
    assert code == 0 and "warning: backend plugin zoo-torch 0.1.0" in err


def test_a_core_inside_the_range_loads_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo_core, "__version__", "0.1.7")
    assert get_backend_spec("torch").name == "torch"


# ---- recipes shipped as package data --------------------------------------------------------
def test_recipes_are_package_data_found_from_any_directory(tmp_path: Path) -> None:
    assert BUNDLED_DIR.is_dir() and BUNDLED_DIR.parent == Path(zoo_core.__file__).parent / "recipes"
    assert Path.cwd() == tmp_path  # no ./recipes here
    assert find_recipe("finetune_sst2_quick") == BUNDLED_DIR / "finetune_sst2_quick.yaml"
    assert not (REPO / "recipes").exists()


def test_a_cwd_recipes_folder_is_searched_first(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    mine = tmp_path / "recipes" / "finetune_rte.yaml"
    mine.write_text("# my own\n")
    assert find_recipe("finetune_rte") == Path("recipes/finetune_rte.yaml")


def test_recipes_copy_writes_one_out_and_never_overwrites(tmp_path: Path) -> None:
    code, out, _ = invoke("recipes", "--copy", "finetune_rte")
    assert code == 0 and "wrote finetune_rte.yaml" in out
    copied = tmp_path / "finetune_rte.yaml"
    assert copied.read_bytes() == (BUNDLED_DIR / "finetune_rte.yaml").read_bytes()
    copied.write_text("# edited\n")
    line = one_error_line(runner.invoke(app, ["recipes", "--copy", "finetune_rte"]))
    assert "finetune_rte.yaml: file exists; not overwritten" in line
    assert copied.read_text() == "# edited\n"
    assert invoke("recipes", "--copy", "finetune_rte", "sub/dir")[0] == 0
    assert (tmp_path / "sub" / "dir" / "finetune_rte.yaml").is_file()
    assert invoke("recipes", "--copy", "finetune_rte", "mine.yml")[0] == 0
    assert (tmp_path / "mine.yml").is_file()
    line = one_error_line(runner.invoke(app, ["recipes", "--copy", "nope"]))
    assert "nope: no such recipe ships with zoo" in line
    line = one_error_line(runner.invoke(app, ["recipes", "--copy", "../finetune_rte"]))
    assert "no such recipe ships with zoo" in line
    line = one_error_line(runner.invoke(app, ["recipes", "somewhere"]))
    assert "a DIR is given with --copy NAME only" in line


# ---- the data root ---------------------------------------------------------------------------
def test_the_data_root_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "zd"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "zd"
    monkeypatch.delenv("ZOO_DATA_DIR")
    assert data_root() == tmp_path / "xdg" / "zoo"
    monkeypatch.setenv("XDG_DATA_HOME", "relative")  # ignored, as the XDG spec says
    assert data_root() == Path.home() / ".local" / "share" / "zoo"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_root() == Path.home() / ".local" / "share" / "zoo"


def test_data_paths_read_the_cwd_first_then_the_data_root(tmp_path: Path) -> None:
    sst2 = Path("data/glue/SST-2")
    assert resolve_data_path(sst2) == sst2  # nowhere: unchanged, for the error message
    rooted = data_root() / "glue" / "SST-2"
    rooted.mkdir(parents=True)
    assert resolve_data_path(sst2) == rooted
    (tmp_path / sst2).mkdir(parents=True)
    assert resolve_data_path(sst2) == sst2  # the cwd's wins (a clone of the repository)
    for other in (Path("glue/SST-2"), tmp_path / "x", Path("data")):
        assert resolve_data_path(other) == other


def test_missing_data_names_the_command_that_prepares_it() -> None:
    code, _, err = invoke("validate", "finetune_sst2_quick")
    assert code == 2
    assert "data.dir: directory data/glue/SST-2 does not exist; not under the data root" in err
    assert "prepare it with `zoo data prepare glue --from DIR`" in err
    code, _, err = invoke("validate", "finetune_trec")
    assert code == 2 and "`zoo data prepare trec --from DIR`" in err
    line = one_error_line(runner.invoke(app, ["run", "finetune_sst2_quick", "--set", "model=bert-l2-h128"]))
    assert "`zoo data prepare glue --from DIR`" in line and len(line) < 400


def test_prepare_glue_then_the_bundled_recipe_reads_it(tmp_path: Path) -> None:
    code, out, err = invoke("data", "prepare", "glue", "--from", GLUE)
    assert code == 0, err
    assert "SST-2/train.tsv: linked (sha256 ok)" in out or "SST-2/train.tsv: copied (sha256 ok)" in out
    root = data_root() / "glue"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        DATASETS["glue"].files
    )
    assert (root / "SST-2" / "dev.tsv").read_bytes() == (GLUE / "SST-2" / "dev.tsv").read_bytes()
    recipe = load_recipe(find_recipe("finetune_sst2_quick"))
    assert recipe.data.dir == root / "SST-2"
    assert invoke("validate", "finetune_sst2_quick", "finetune_rte")[0] == 0
    assert invoke("data", "prepare", "glue", "--from", GLUE)[0] == 0  # again: replaced in place


def test_prepare_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "SST-2").mkdir(parents=True)
    shutil.copy(GLUE / "SST-2" / "dev.tsv", mine / "SST-2" / "dev.tsv")
    with (mine / "SST-2" / "dev.tsv").open("a") as f:
        f.write("an extra row\t1\n")
    cases = {
        ("glue", "--from", str(mine)): "is not the published file's",
        ("glue", "--from", str(tmp_path / "none")): "not a directory",
        ("glue", "--from", str(tmp_path)): "no glue file there",
        ("squad", "--from", str(mine)): "unknown dataset 'squad'; zoo data prepare knows: glue, trec",
    }
    for args, expected in cases.items():
        line = one_error_line(runner.invoke(app, ["data", "prepare", *args]))
        assert expected in line, line
    assert not data_root().exists()  # nothing laid out by a refusal
    code, out, _ = invoke("data", "prepare", "glue", "--from", mine, "--no-verify")
    assert code == 0 and "SST-2/dev.tsv: " in out and "(not verified)" in out


def test_prepare_trec_and_its_recipe_validates() -> None:
    placed = prepare("trec", REPO / "data" / "trec")
    assert [p.name for p in placed] == ["train.jsonl"]
    assert invoke("validate", "finetune_trec")[0] == 0
    with pytest.raises(DataError, match="no trec file there"):
        prepare("trec", GLUE)


def test_a_recipe_written_out_runs_its_data_from_the_root(tmp_path: Path) -> None:
    prepare("glue", GLUE)
    assert invoke("recipes", "--copy", "finetune_rte", "mine")[0] == 0
    data = yaml.safe_load((tmp_path / "mine" / "finetune_rte.yaml").read_text())
    assert data["data"]["dir"] == "data/glue/RTE"
    assert invoke("validate", "mine/finetune_rte.yaml")[0] == 0
    assert os.environ["ZOO_DATA_DIR"] == str(data_root())
