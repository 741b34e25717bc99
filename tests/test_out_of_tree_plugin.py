"""A backend from another distribution: installed offline, listed, used, run against the conformance suite.

The plugin is ``examples/zoo_numpy_backend`` (the worked example of docs/backends.md), copied
to a temporary folder and pip-installed there with ``--target`` (no index, no build
isolation: no network), so this environment itself is left untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RecipeWriter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "zoo_numpy_backend"
ZOO = str(Path(sys.executable).parent / "zoo")


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """The environment variables under which the example plugin is installed (PYTHONPATH)."""
    package = tmp_path / "zoo-numpy"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    site = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--target", str(site), str(package)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {**os.environ, "PYTHONPATH": str(site)}


def zoo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ZOO, *args], capture_output=True, text=True, env=env)


def test_an_installed_plugin_is_listed_used_and_conforms(
    plugin_env: dict[str, str], tiny_run: Path, write_recipe: RecipeWriter
) -> None:
    listed = zoo(plugin_env, "backends")
    assert listed.returncode == 0 and "numpy" in listed.stdout and "zoo-numpy" in listed.stdout
    scores = {
        name: json.loads(zoo(plugin_env, "eval", str(tiny_run / "best"), "--backend", name, "--json").stdout)
        for name in ("numpy", "torch")
    }
    assert scores["numpy"]["accuracy"] == scores["torch"]["accuracy"]
    refused = zoo(plugin_env, "validate", str(write_recipe()), "--backend", "numpy")
    assert refused.returncode == 2
    assert "backend 'numpy' cannot run finetune recipes (it can: nothing)" in refused.stderr
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env=plugin_env,
        cwd=EXAMPLE,
    )
    assert suite.returncode == 0, suite.stdout[-2000:]
    assert " passed" in suite.stdout and " failed" not in suite.stdout, suite.stdout[-2000:]
