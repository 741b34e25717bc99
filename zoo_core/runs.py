"""Run directories: ``runs/<recipe-name>/`` with the resolved recipe, a log,
``metrics.jsonl``, step checkpoints and the best checkpoint.

    recipe.yaml            the resolved recipe (every default filled in)
    run.log                human-readable log
    metrics.jsonl          one JSON object per logging step / evaluation
    checkpoints/step-N/    portable checkpoint + trainer_state.json + optimizer state
    best/                  portable checkpoint with the best dev metric
    result.json            written last: final metrics, best checkpoint

Only the writer (rank 0) touches the directory.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from zoo_core.checkpoint import atomic_directory
from zoo_core.errors import RunDirError

#: recipe fields that may change between a run and its resumption
RESUMABLE_CHANGES = (
    "description",
    "device",
    "output_dir",
    "backend_options",
    "eval",
    "checkpoints",
    "train.max_steps",
    "train.num_epochs",
    "train.logging_steps",
)
_CKPT_PREFIX = "step-"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted fields that differ between two resolved recipes, ignoring resumable ones."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)
    ]


class RunDir:
    """One run's directory; create with :meth:`prepare`."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    # ---- layout ----------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        """Folder of the step checkpoints."""
        return self.path / "checkpoints"

    @property
    def best_dir(self) -> Path:
        """The best checkpoint so far."""
        return self.path / "best"

    @property
    def result_file(self) -> Path:
        """Written when the run finishes."""
        return self.path / "result.json"

    def checkpoint_dir(self, step: int) -> Path:
        """Where the checkpoint of ``step`` goes."""
        return self.checkpoints_dir / f"{_CKPT_PREFIX}{step:07d}"

    # ---- lifecycle -------------------------------------------------------------
    def check(self, recipe: dict[str, Any], restart: bool = False) -> None:
        """Raise RunDirError unless the directory is absent, empty, or a run of this recipe.

        Reads only; a run calls this before any expensive work so that a clash is
        reported at once.  With ``restart`` any zoo run directory is acceptable
        (:meth:`prepare` then deletes it); a foreign non-empty directory never is.
        """
        saved = self.path / "recipe.yaml"
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"output directory {self.path} is a file; choose another output_dir")
        if self.path.exists() and any(self.path.iterdir()):
            if not saved.is_file():
                raise RunDirError(
                    f"output directory {self.path} exists and is not a zoo run directory; "
                    "choose another output_dir"
                )
            else:
                old = self.saved_recipe() or {}
                if old.get("name") != recipe.get("name") or old.get("kind") != recipe.get("kind"):
                    raise RunDirError(
                        f"output directory {self.path} holds a run of recipe {old.get('name')!r} "
                        f"({old.get('kind')}); choose another output_dir or pass --restart to replace it"
                    )
                diff = recipe_differences(old, recipe)
                if diff and not restart:
                    raise RunDirError(
                        f"output directory {self.path} holds a run of recipe {old.get('name')!r} with "
                        f"other settings ({', '.join(diff[:4])}); "
                        "pass --restart to replace it, or set output_dir"
                    )

    def prepare(self, recipe: dict[str, Any], restart: bool = False) -> None:
        """Check the directory (:meth:`check`), then create it and save the resolved recipe.

        With ``restart`` an earlier run of the recipe is deleted first.
        """
        self.check(recipe, restart)
        saved = self.path / "recipe.yaml"
        if restart and self.writer and saved.is_file():
            shutil.rmtree(self.path)
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            saved.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")

    def saved_recipe(self) -> dict[str, Any] | None:
        """The resolved recipe saved by :meth:`prepare`, or None."""
        saved = self.path / "recipe.yaml"
        if not saved.is_file():
            return None
        data = yaml.safe_load(saved.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None

    def finished(self) -> dict[str, Any] | None:
        """The result of a finished run, or None."""
        if not self.result_file.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(self.result_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data

    def write_result(self, result: dict[str, Any]) -> None:
        """Mark the run finished."""
        if self.writer:
            tmp = self.result_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
            tmp.replace(self.result_file)

    # ---- logging ---------------------------------------------------------------
    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl."""
        if self.writer:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=float) + "\n")

    def log(self, message: str) -> None:
        """Append a timestamped line to run.log."""
        if self.writer:
            with open(self.path / "run.log", "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")

    # ---- checkpoints -------------------------------------------------------------
    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """Complete step checkpoints, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        out = []
        for p in self.checkpoints_dir.iterdir():
            if p.name.startswith(_CKPT_PREFIX) and (p / "trainer_state.json").is_file():
                try:
                    out.append((int(p.name[len(_CKPT_PREFIX) :]), p))
                except ValueError:
                    continue
        return sorted(out)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete step checkpoint, or None."""
        ckpts = self.step_checkpoints()
        return ckpts[-1][1] if ckpts else None

    def prune(self, keep_last: int) -> None:
        """Delete all but the newest ``keep_last`` step checkpoints."""
        if not self.writer:
            return
        for _, p in self.step_checkpoints()[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)

    def copy_to_best(self, checkpoint: Path, portable_files: tuple[str, ...]) -> None:
        """Replace best/ atomically with the portable files of ``checkpoint``."""
        if not self.writer:
            return

        def fill(tmp: Path) -> None:
            for name in portable_files:
                if (checkpoint / name).exists():
                    shutil.copy2(checkpoint / name, tmp / name)

        atomic_directory(self.best_dir, fill)
