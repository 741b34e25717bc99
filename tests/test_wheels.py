"""zoo as a user installs it: built wheels in a fresh virtual environment, far from the repository.

``python -m build --no-isolation`` makes the sdist and, from it, the wheel of zoo-core, zoo-torch
and the example out-of-tree plugin zoo-numpy (so the sdists are checked to hold what a build
needs).  A new venv (no system site-packages, no editable install, no repository on the path)
gets the wheels with ``-c constraints.txt`` (torch from the machine's CPU wheel, everything else
from the index or pip's cache), then zoo is run from an empty directory: ``zoo backends``,
``zoo recipes``, ``zoo validate finetune_sst2_quick``, ``zoo data prepare glue`` and a two-step
``zoo run`` of a tiny model.  The zoo-numpy wheel is installed against the zoo-core wheel with
``--no-index`` and passes the conformance suite.  About two minutes on 2 CPU cores, one of them
pip installing torch and its dependencies; ``ZOO_SKIP_WHEELS=1`` skips it for quick local runs (CI runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from zoo_core import __version__

pytestmark = pytest.mark.skipif(
    os.environ.get("ZOO_SKIP_WHEELS") == "1", reason="ZOO_SKIP_WHEELS=1: the wheels test is skipped"
)

#: the projects built, by distribution name
PROJECTS = {
    "zoo_core": REPO,
    "zoo_torch": REPO / "plugins" / "torch_backend",
    "zoo_numpy": REPO / "examples" / "zoo_numpy_backend",
}
RECIPES = sorted(p.name for p in (REPO / "zoo_core" / "recipes" / "files").glob("*.yaml"))
#: a GLUE folder as a user would have it (the repository's copy of the published files)
GLUE = REPO / "data" / "glue"
#: what ``zoo run`` trains: a random 2-layer model, 2 steps of short sequences
TINY_RUN = [
    "--set", "model=bert-l2-h128",
    "--set", "train.max_steps=2",
    "--set", "train.batch_size=8",
    "--set", "train.logging_steps=1",
    "--set", "data.max_seq_length=16",
    "--set", "eval.batch_size=128",
]  # fmt: skip


def run(
    command: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output's tail unless it exits 0."""
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env)
    assert done.returncode == 0, (
        f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdists and wheels of :data:`PROJECTS`, built without isolation (no network)."""
    out = tmp_path_factory.mktemp("dist")
    for project in PROJECTS.values():
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, project])
    return out


def wheel(dist: Path, name: str) -> Path:
    """The one wheel of distribution ``name`` (import name spelling) in ``dist``."""
    [found] = dist.glob(f"{name}-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the zoo-core and zoo-torch wheels (and pytest, for the conformance suite).

    ``--no-compile``: byte-compiling all of torch at install time costs more than compiling
    what the tests import.  Left for pytest's rotation of its temporary folders (it keeps the
    last three sessions' folders): deleting torch's files here takes about a minute on this disk.
    """
    path = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", path])
    pip = [path / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile"]
    pip += ["-c", REPO / "constraints.txt"]
    run([*pip, wheel(dist, "zoo_core"), wheel(dist, "zoo_torch"), "pytest"], env=clean_env())
    return path


def clean_env(**extra: str | Path) -> dict[str, str]:
    """This environment without anything that points into the repository or its venv.

    ``COLUMNS``: wide enough that rich's tables do not fold a name across lines.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["COLUMNS"] = "300"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_the_wheels_hold_the_recipes_and_no_tests(dist: Path) -> None:
    core = zipfile.ZipFile(wheel(dist, "zoo_core")).namelist()
    torch = zipfile.ZipFile(wheel(dist, "zoo_torch")).namelist()
    assert sorted(n.rpartition("/")[2] for n in core if n.startswith("zoo_core/recipes/files/")) == RECIPES
    assert "zoo_core/py.typed" in core and "zoo_core/models/vocab/bert-base-uncased.txt" in core
    assert "zoo_core/testing/conformance/core.py" in core  # the suite plugin authors run
    assert f"zoo_core-{__version__}.dist-info/METADATA" in core
    for names, package in ((core, "zoo_core"), (torch, "zoo_torch")):
        tops = {n.partition("/")[0] for n in names}
        assert tops == {package, f"{package}-{__version__}.dist-info"}, tops  # no tests/, benchmarks/
    metadata = zipfile.ZipFile(wheel(dist, "zoo_torch")).read(f"zoo_torch-{__version__}.dist-info/METADATA")
    assert b"Requires-Dist: zoo-core<0.2,>=0.1" in metadata
    [sdist] = dist.glob("zoo_core-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.partition("/")[2] for m in tar.getnames()}
    assert {"README.md", "MANIFEST.in", "zoo_core/recipes/files/finetune_sst2_quick.yaml"} <= members
    assert not any(m.startswith(("tests/", "benchmarks/", "plugins/", "data/")) for m in members)


def test_installed_zoo_works_from_an_empty_directory(venv: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(ZOO_DATA_DIR=tmp_path / "zoo-data", ZOO_CACHE_DIR=tmp_path / "zoo-cache")
    python, zoo = venv / "bin" / "python", venv / "bin" / "zoo"

    def zoo_ok(*args: str | Path) -> str:
        return run([zoo, *args], cwd=empty, env=env).stdout

    code = "import zoo_core, zoo_torch; print(zoo_core.__file__, zoo_torch.__file__)"
    where = run([python, "-c", code], cwd=empty, env=env)
    files = [Path(p).resolve() for p in where.stdout.split()]
    assert all(f.is_relative_to(venv.resolve()) for f in files), files  # not the repository
    assert "zoo-torch" in zoo_ok("backends")
    listed = zoo_ok("recipes")
    assert "finetune_sst2_quick" in listed and "dynabert_trec" in listed
    missing = subprocess.run(
        [zoo, "validate", "finetune_sst2_quick"], capture_output=True, text=True, cwd=empty, env=env
    )
    assert missing.returncode == 2 and "`zoo data prepare glue --from DIR`" in missing.stderr
    assert "SST-2/train.tsv: " in zoo_ok("data", "prepare", "glue", "--from", GLUE)
    assert ": ok (finetune, task sst2)" in zoo_ok("validate", "finetune_sst2_quick", "--backend", "torch")
    last = zoo_ok("run", "finetune_sst2_quick", "--backend", "torch", *TINY_RUN).strip().splitlines()[-1]
    assert last.startswith("dev accuracy "), last
    assert (empty / "runs" / "finetune_sst2_quick" / "best" / "model.safetensors").is_file()
    zoo_ok("recipes", "--copy", "finetune_rte")
    assert (empty / "finetune_rte.yaml").is_file()
    assert sorted(p.name for p in empty.iterdir()) == ["finetune_rte.yaml", "runs"]


def test_the_example_plugin_wheel_conforms(venv: Path, dist: Path, tmp_path: Path) -> None:
    env = clean_env(ZOO_CACHE_DIR=tmp_path / "zoo-cache")
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", "--no-index"]
    run([*pip, wheel(dist, "zoo_numpy")], env=env)  # its zoo-core: the installed wheel
    assert "zoo-numpy" in run([venv / "bin" / "zoo", "backends"], cwd=tmp_path, env=env).stdout
    suite = tmp_path / "suite"
    shutil.copytree(PROJECTS["zoo_numpy"] / "tests", suite, ignore=shutil.ignore_patterns("__pycache__"))
    done = run(
        [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", suite], tmp_path, env
    )
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-2000:]
