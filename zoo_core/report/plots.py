"""The report's PNG plots (matplotlib, headless): one function per picture.

Each function takes the runs, writes one PNG and returns its path, or None when no
run has the data that picture needs (the report then says what would add it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo_core.errors import ZooError
from zoo_core.report.history import RunHistory


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise ZooError("zoo report draws with matplotlib: pip install 'zoo-core[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_point(rows: Sequence[dict[str, Any]]) -> tuple[str, int, int] | None:
    """The (runtime, batch, seq) the report compares: onnxruntime if present, largest batch and length."""
    if not rows:
        return None
    runtimes = {r["runtime"] for r in rows}
    runtime = "onnxruntime" if "onnxruntime" in runtimes else sorted(runtimes)[0]
    chosen = [r for r in rows if r["runtime"] == runtime]
    return runtime, max(r["batch_size"] for r in chosen), max(r["seq_len"] for r in chosen)


def latency_by_width(run: RunHistory, point: tuple[str, int, int]) -> dict[float, float]:
    """Median latency (ms) per width of ``run`` at ``point``."""
    runtime, batch, seq = point
    return {
        float(r["width"]): float(r["median_ms"])
        for r in run.bench
        if (r["runtime"], r["batch_size"], r["seq_len"]) == (runtime, batch, seq)
    }


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def training_curves(runs: Sequence[RunHistory], path: Path) -> Path | None:
    """Training loss and learning rate per step, one line per run, stage starts marked."""
    runs = [r for r in runs if r.train]
    if not runs:
        return None
    plt = pyplot()
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    labelled: set[tuple[int, str]] = set()
    for run in runs:
        steps = [r["step"] for r in run.train]
        (line,) = loss_ax.plot(steps, [r["loss"] for r in run.train], label=run.name, linewidth=1)
        lr_ax.plot(steps, [r.get("lr", float("nan")) for r in run.train], color=line.get_color(), linewidth=1)
        for start, stage in run.stage_starts:
            loss_ax.axvline(start, color=line.get_color(), linestyle=":", linewidth=0.8)
            if (start, stage) not in labelled:  # runs with the same stages share one label
                labelled.add((start, stage))
                loss_ax.annotate(
                    stage, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top"
                )
    loss_ax.set_ylabel("training loss")
    loss_ax.set_yscale("log")
    loss_ax.legend(fontsize=8)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step (stages laid end to end)")
    return _save(fig, path)


def dev_curves(runs: Sequence[RunHistory], path: Path) -> Path | None:
    """Dev metric at every evaluation; a width run draws one line per width."""
    runs = [r for r in runs if r.evals]
    if not runs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        keys = sorted({k for _, metrics in run.evals for k in metrics if k.split("@")[0] == run.metric_name})
        for key in keys:
            points = [(step, m[key]) for step, m in run.evals if key in m]
            label = run.name if "@" not in key else f"{run.name} @{key.split('@')[1]}"
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, linewidth=1, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"dev {runs[0].metric_name}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def metric_vs_width(runs: Sequence[RunHistory], path: Path) -> Path | None:
    """Final dev metric per width of each width run; other runs as horizontal reference lines."""
    width_runs = [r for r in runs if len(r.metric_by_width()) > 1]
    if not width_runs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    teachers: set[float] = set()
    for run in width_runs:
        by_width = sorted(run.metric_by_width().items())
        ax.plot(*zip(*by_width, strict=True), marker="o", label=run.name)
        value = (run.result.get("teacher_metrics") or {}).get(run.metric_name)
        if value is not None and value not in teachers:  # runs sharing a teacher draw it once
            teachers.add(value)
            ax.axhline(value, linestyle="--", linewidth=0.8, color="grey", label=f"teacher of {run.name}")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    others = [r for r in runs if r not in width_runs and 1.0 in r.metric_by_width()]
    for i, run in enumerate(others, start=len(width_runs)):
        colour = colours[i % len(colours)]
        ax.axhline(run.metric_by_width()[1.0], linestyle=":", linewidth=1.2, color=colour, label=run.name)
    ax.set_xlabel("width multiplier")
    ax.set_ylabel(f"dev {width_runs[0].metric_name}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latency_vs_width(runs: Sequence[RunHistory], path: Path) -> Path | None:
    """Median latency per width from each run's bench.json."""
    drawn: list[tuple[str, int, int]] = []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        point = latency_point(run.bench)
        if point is None:
            continue
        by_width = sorted(latency_by_width(run, point).items())
        if len(by_width) > 1:
            ax.plot(*zip(*by_width, strict=True), marker="o", label=f"{run.name} ({point[0]})")
            drawn.append(point)
    if not drawn:
        plt.close(fig)
        return None
    _, batch, seq = drawn[0]
    ax.set_xlabel("width multiplier")
    ax.set_ylabel(f"median latency, ms (batch {batch} x {seq} tokens)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def frontier_points(runs: Sequence[RunHistory]) -> list[tuple[float, float, str]]:
    """``(latency ms, dev metric, label)`` of every model (run and width) with both numbers."""
    points = []
    for run in runs:
        point = latency_point(run.bench)
        if point is None:
            continue
        latency = latency_by_width(run, point)
        for width, metric in run.metric_by_width().items():
            if width in latency:
                label = run.name if width == 1.0 and len(latency) == 1 else f"{run.name} @{width:g}"
                points.append((latency[width], metric, label))
        for r in run.bench:  # INT8 exports: their own dev metric (zoo export --quantize int8)
            other_model = r["runtime"] != point[0] and r.get("metric") is not None
            if other_model and (r["runtime"], r["batch_size"], r["seq_len"])[1:] == point[1:]:
                label = f"{run.name} @{r['width']:g} {r['runtime'].rsplit('-', 1)[-1]}"
                points.append((float(r["median_ms"]), float(r["metric"]), label))
    return points


def pareto(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both latency (lower) and metric (higher), fastest first."""
    front: list[tuple[float, float, str]] = []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or point[1] > front[-1][1]:
            front.append(point)
    return front


def frontier(runs: Sequence[RunHistory], path: Path) -> Path | None:
    """Dev metric against latency for every model, the accuracy-latency frontier drawn through them."""
    points = frontier_points(runs)
    if len(points) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for latency, metric, label in points:
        ax.scatter([latency], [metric])
        ax.annotate(label, (latency, metric), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto(points)
    ax.plot([p[0] for p in front], [p[1] for p in front], linestyle="--", color="black", linewidth=1)
    ax.set_xlabel("median latency, ms")
    ax.set_ylabel("dev metric")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_plot(matrix: Any, labels: Sequence[str], path: Path, title: str) -> Path:
    """A confusion matrix (rows: true label, columns: predicted) as a PNG at ``path``."""
    import numpy as np

    plt = pyplot()
    counts = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > threshold else "black"
        ax.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_vs_parameter(
    trials: Sequence[dict[str, Any]],
    key: str,
    values: Sequence[Any],
    metric: str,
    best: int | None,
    path: Path,
) -> Path | None:
    """A sweep's dev metric against one swept parameter: a point per trial, the best one starred.

    ``trials`` are sweep.json's rows; completed trials are filled dots, pruned ones hollow
    (at their last evaluation), failed ones left out.  Numbers lie on a number line (log
    scale when they span a factor of 5 or more, as learning rates do); other values in
    grid order.  ``best`` is the best trial's number.
    """
    shown = [t for t in trials if t.get("value") is not None and key in t.get("params", {})]
    if not shown:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric:
        position = {json_key(v): float(v) for v in values}
        positive = [float(v) for v in values if float(v) > 0]
        if len(positive) == len(values) and max(positive) / min(positive) >= 5:
            ax.set_xscale("log")
    else:
        position = {json_key(v): float(i) for i, v in enumerate(values)}
        ax.set_xticks(range(len(values)), labels=[str(v) for v in values])
    for state, fill in (("COMPLETE", True), ("PRUNED", False)):
        points = [(position[json_key(t["params"][key])], t["value"]) for t in shown if t["state"] == state]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(
                xs,
                ys,
                facecolors="tab:blue" if fill else "none",
                edgecolors="tab:blue",
                label="trial" if fill else "pruned (last evaluation)",
            )
    winner = [t for t in shown if t.get("number") == best]
    if winner:
        x, y = position[json_key(winner[0]["params"][key])], winner[0]["value"]
        ax.scatter([x], [y], marker="*", s=260, color="tab:red", zorder=3, label="best")
        ax.annotate(f"best {y:.4f}", (x, y), fontsize=8, xytext=(6, 6), textcoords="offset points")
    ax.set_xlabel(key)
    ax.set_ylabel(f"dev {metric}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def json_key(value: Any) -> str:
    """A grid value as a dictionary key (1 and 1.0, true and 1 stay apart)."""
    import json

    return json.dumps(value)
