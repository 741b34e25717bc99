"""One writer per run directory: a second ``zoo run`` of a locked directory says who holds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.cli.main import app
from zoo_core.runs import RunDir

#: holds the lock of the directory argv[1] until killed
HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from zoo_core.runs import RunDir\n"
    "run = RunDir(Path(sys.argv[1]))\n"
    "run.path.mkdir(parents=True)\n"
    "run.lock()\n"
    "print('locked', flush=True)\n"
    "time.sleep(300)\n"
)


def test_locked_directory_is_refused_until_its_holder_dies(
    write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    recipe = write_recipe()
    run = tmp_path / "runs" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(app, ["run", str(recipe), "-q"])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "is being written by another zoo run" in lines[0] and f"pid {holder.pid} on " in lines[0]
        assert "started " in lines[0]
        assert sorted(p.name for p in run.iterdir()) == [".lock"], "nothing written"
        # a data-parallel rank other than 0 writes nothing and takes no lock
        RunDir(run, writer=False).prepare({"kind": "finetune", "name": "tiny"})
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait()
    result = CliRunner().invoke(app, ["run", str(recipe), "-q"])
    assert result.exit_code == 0, result.output
    assert (run / "result.json").is_file()


def test_the_lock_survives_restart(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    """--restart deletes the run but keeps (and holds) the lock file."""
    recipe = write_recipe(train={"max_steps": 2}, eval={"every_steps": 2})
    run = tmp_path / "runs" / "tiny"
    assert CliRunner().invoke(app, ["run", str(recipe), "-q"]).exit_code == 0
    result = CliRunner().invoke(app, ["run", str(recipe), "-q", "--restart"])
    assert result.exit_code == 0, result.output
    assert (run / ".lock").is_file() and (run / "result.json").is_file()
    assert not [p for p in run.iterdir() if ".trash-" in p.name]
