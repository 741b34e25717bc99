"""What ``zoo report`` reads from a run directory: logs, evaluations, results, benchmarks.

Everything comes from files runs already write (``metrics.jsonl``, ``result.json``,
``best/zoo.json``) and from ``bench.json`` when ``zoo bench`` has been run on the run.
A distillation run's stages (``stage-N-kind/``) are joined into one history, their
steps laid end to end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_core.errors import ModelError
from zoo_core.files import load_json
from zoo_core.runs import metrics_lines


@dataclass
class RunHistory:
    """One run as the report sees it."""

    name: str
    path: Path
    kind: str
    backend: str | None
    task: str | None
    #: training log lines: ``step`` (counted across stages), ``loss``, ``lr``, ``stage``
    train: list[dict[str, Any]] = field(default_factory=list)
    #: ``(step, {metric: value})`` per evaluation, steps counted across stages
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    #: ``(first step, stage name)`` of every stage after the first
    stage_starts: list[tuple[int, str]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    #: rows of ``bench.json`` (see :class:`zoo_core.runners.bench.BenchRow`)
    bench: list[dict[str, Any]] = field(default_factory=list)
    #: ``per_class.json`` of a classification run: best/ per class on dev (empty if absent)
    per_class: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_name(self) -> str | None:
        """The task's main metric (``accuracy``), also for width runs, whose keys are ``accuracy@W``."""
        name = self.result.get("main_metric")
        if isinstance(name, str):
            return name
        for key in self.result.get("final", {}):
            return str(key).split("@")[0]
        return None

    def metric_by_width(self) -> dict[float, float]:
        """Final dev metric per width: every trained width of a width run, else ``{1.0: metric}``."""
        final = self.result.get("final", {})
        name = self.metric_name
        by_width: dict[float, float] = {}
        for key, value in final.items():
            base, _, width = str(key).partition("@")
            if base == name:
                by_width[float(width) if width else 1.0] = float(value)
        return by_width


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content (size-capped, UTF-8); a broken file is a one-line error naming it."""
    data: dict[str, Any] = load_json(path, error=ModelError, context="unreadable")
    return data


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a truncated last line, from an interrupted run, is skipped).

    Lines that are not JSON objects, or whose ``step`` or evaluation is not numbers, are skipped
    like a torn line; a line that is not UTF-8 is a one-line error naming the file.
    """
    records = []
    for line in metrics_lines(path, ModelError, "repair or delete that line"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if _usable(record):
            records.append(record)
    return records


def _usable(record: Any) -> bool:
    """True for a metrics record that is an object whose ``step`` and evaluation values are numbers."""
    if not isinstance(record, dict):
        return False
    evals = record.get("eval") or {}
    if not isinstance(evals, dict):
        return False
    numbers = [record.get("step", 0), *evals.values()]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)


def load_history(path: Path) -> RunHistory:
    """Read a finished run directory (``result.json`` required) into a :class:`RunHistory`."""
    if not (path / "result.json").is_file():
        raise ModelError(f"{path}: not a finished run (no result.json); finish it with zoo run first")
    meta_path = path / "best" / "zoo.json"
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    history = RunHistory(
        name=path.name,
        path=path,
        kind=str(meta.get("kind", "finetune")),
        backend=meta.get("backend"),
        task=meta.get("task"),
        result=_read_json(path / "result.json"),
    )
    stages = sorted(p for p in path.glob("stage-*") if (p / "metrics.jsonl").is_file())
    sources = [(p.name.split("-", 2)[-1], p / "metrics.jsonl") for p in stages]
    if (path / "metrics.jsonl").is_file():
        sources.insert(0, ("", path / "metrics.jsonl"))
    offset = 0
    for index, (stage, metrics) in enumerate(sources):
        if index:
            history.stage_starts.append((offset, stage))
        last = 0
        for record in _read_metrics(metrics):
            step = int(record.get("step", 0))
            last = max(last, step)
            if "loss" in record:
                history.train.append({**record, "step": offset + step, "stage": stage})
            if record.get("eval"):
                history.evals.append((offset + step, {k: float(v) for k, v in record["eval"].items()}))
        offset += last
    per_class = path / "per_class.json"
    if per_class.is_file():
        history.per_class = dict(_read_json(per_class))
    bench = path / "bench.json"
    if bench.is_file():
        history.bench = list(_read_json(bench).get("rows", []))
    return history
