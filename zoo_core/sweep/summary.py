"""``SWEEP_DIR/sweep.json``: a sweep's trials and its best one, for ``zoo report`` and ``zoo export``.

``zoo sweep`` rewrites it (atomically) after every trial and when it ends, from the
study's storage; reading it needs neither Optuna nor the storage.  Trial run
directories are recorded relative to the sweep directory, so the folder can move.

    {"recipe": ..., "backend": ..., "metric": "accuracy", "sampler": "grid", "pruner": "median",
     "grid": {"train.learning_rate": [0.0001, 5e-05], ...},
     "trials": [{"number": 0, "state": "COMPLETE", "params": {...}, "value": 0.81,
                 "last_step": 6, "wall_seconds": 12.3, "run_dir": "trials/learning_rate=0.0001,..."}],
     "best": {"number": 0, "params": {...}, "value": 0.81, "run_dir": "trials/..."} or null}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoo_core.errors import ModelError
from zoo_core.files import load_json

SUMMARY_FILE = "sweep.json"


def is_sweep_dir(path: Path) -> bool:
    """True for a directory ``zoo sweep`` wrote (it holds sweep.json)."""
    return (Path(path) / SUMMARY_FILE).is_file()


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    """Write ``directory/sweep.json`` atomically (a temporary sibling, then rename)."""
    path = Path(directory) / SUMMARY_FILE
    tmp = path.with_name(f".{SUMMARY_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_summary(directory: Path) -> dict[str, Any]:
    """The sweep.json of ``directory``; a broken one is a one-line error naming it."""
    path = Path(directory) / SUMMARY_FILE
    data: dict[str, Any] = load_json(path, error=ModelError, context="unreadable (run zoo sweep again)")
    if not isinstance(data.get("trials"), list) or not isinstance(data.get("grid"), dict):
        raise ModelError(f"{path}: not a zoo sweep summary (no trials / grid); run zoo sweep again")
    return data


def best_run_dir(directory: Path) -> Path:
    """The run directory of the sweep's best trial (what ``zoo export SWEEP_DIR`` exports)."""
    best = read_summary(directory).get("best")
    if not isinstance(best, dict) or not isinstance(best.get("run_dir"), str):
        raise ModelError(f"{directory}: the sweep has no finished trial yet; run zoo sweep to finish one")
    return Path(directory) / best["run_dir"]


def finished_run_dirs(directory: Path) -> list[Path]:
    """The run directories of the sweep's finished trials (with result.json), in trial order."""
    summary = read_summary(directory)
    dirs = [
        Path(directory) / t["run_dir"]
        for t in summary["trials"]
        if isinstance(t, dict) and isinstance(t.get("run_dir"), str)
    ]
    return [d for d in dict.fromkeys(dirs) if (d / "result.json").is_file()]
