"""Build ``report.md`` and its plots for a set of finished runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo_core.report import plots
from zoo_core.report.history import RunHistory, load_history
from zoo_core.sweep.spec import format_value
from zoo_core.sweep.summary import finished_run_dirs, is_sweep_dir, read_summary

#: the pictures, in report order: (file, title, what adds the data when it is missing)
PICTURES = (
    ("training.png", "Training loss and learning rate", "a run with a metrics.jsonl"),
    ("dev_metric.png", "Dev metric at each evaluation", "a run that evaluated during training"),
    ("metric_vs_width.png", "Dev metric by width", "a DynaBERT width run"),
    (
        "latency_vs_width.png",
        "Latency by width",
        "`zoo bench RUN --widths 1,0.8333,0.6667,0.5` on a width run",
    ),
    ("frontier.png", "Accuracy-latency frontier", "`zoo bench` on two or more runs (or widths)"),
)


def _cell(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def runs_table(runs: Sequence[RunHistory]) -> list[str]:
    """The Markdown table of runs: kind, backend, final dev metric(s), wall time, speed, memory."""
    lines = [
        "| run | kind | backend | dev metric | wall | train samples/s | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        by_width = run.metric_by_width()
        if len(by_width) > 1:
            metric = ", ".join(f"{v:.4f} @{w:g}" for w, v in sorted(by_width.items(), reverse=True))
        else:
            metric = _cell(by_width.get(1.0))
        result = run.result
        wall = result.get("wall_seconds")
        speed = result.get("train_samples_per_s")
        memory = result.get("peak_memory_mb")
        lines.append(
            f"| {run.name} | {run.kind} | {run.backend or '—'} | {run.metric_name or ''} {metric} | "
            f"{'—' if wall is None else f'{wall / 60:.1f} min'} | {_cell(speed, 1)} | "
            f"{'—' if memory is None else f'{memory:.0f} MiB'} |"
        )
    return lines


def bench_table(runs: Sequence[RunHistory]) -> list[str]:
    """The latency rows every run's bench.json holds, as a Markdown table (empty if none)."""
    rows = [(run.name, r) for run in runs for r in run.bench]
    if not rows:
        return []
    lines = [
        "| run | width | runtime | batch x seq | median ms | p90 ms | samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['width']:g} | {r['runtime']} | {r['batch_size']} x {r['seq_len']} | "
            f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['samples_per_s']:.1f} |"
        )
    return lines


def per_class_table(run: RunHistory) -> list[str]:
    """A run's per-class precision, recall, F1 and support on dev (best/), as Markdown (empty if none)."""
    rows = run.per_class.get("per_class") or []
    if not rows:
        return []
    lines = [
        f"### {run.name} ({run.per_class.get('split', 'dev')}, best/)",
        "",
        "| label | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
        )
    return [*lines, ""]


def _sweep_cell(value: object) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def sweep_section(sweep_dir: Path, output: Path, prefix: str) -> list[str]:
    """A sweep's trials as a table and one plot of the metric against each swept parameter."""
    summary = read_summary(sweep_dir)
    grid: dict[str, list[object]] = summary["grid"]
    names: dict[str, str] = summary.get("names") or {k: k for k in grid}
    metric = str(summary.get("metric", "metric"))
    best = summary.get("best") or {}
    trials = [t for t in summary["trials"] if isinstance(t, dict)]
    lines = [
        f"## Sweep `{sweep_dir}`",
        "",
        f"{len(trials)} trials, {summary.get('sampler', 'grid')} sampler, dev {metric}; "
        + (
            f"best: trial {best['number']} (`{sweep_dir / best['run_dir']}`), "
            "which `zoo export` takes for the sweep directory."
            if best
            else "no trial has finished yet."
        ),
        "",
        "| trial | " + " | ".join(names[k] for k in grid) + f" | dev {metric} | state |",
        "|---|" + "---|" * len(grid) + "---|---|",
    ]
    for t in trials:
        params = t.get("params", {})
        mark = " **best**" if best and t.get("number") == best.get("number") else ""
        lines.append(
            f"| {t.get('number')} | "
            + " | ".join(format_value(params.get(k)) for k in grid)
            + f" | {_sweep_cell(t.get('value'))} | {str(t.get('state', '')).lower()}{mark} |"
        )
    lines.append("")
    for key, values in grid.items():
        name = f"{prefix}{names[key]}.png"
        drawn = plots.metric_vs_parameter(trials, key, values, metric, best.get("number"), output / name)
        title = f"Dev {metric} by {names[key]}"
        lines += [f"### {title}", "", f"![{title}]({name})" if drawn else "No finished trial yet.", ""]
    return lines


def build_report(run_dirs: Sequence[Path], output: Path) -> Path:
    """Write ``output/report.md`` and its PNGs for ``run_dirs``; return the report's path.

    A sweep directory (``zoo sweep``) adds its finished trials as runs and a section of
    its own: the trials, and the dev metric against each swept parameter, best marked.
    """
    sweeps = [Path(p) for p in run_dirs if is_sweep_dir(Path(p))]
    plain = [Path(p) for p in run_dirs if not is_sweep_dir(Path(p))]
    trial_dirs = [d for sweep in sweeps for d in finished_run_dirs(sweep)]
    runs = [load_history(p) for p in [*plain, *trial_dirs]]
    output.mkdir(parents=True, exist_ok=True)
    drawers = (
        plots.training_curves,
        plots.dev_curves,
        plots.metric_vs_width,
        plots.latency_vs_width,
        plots.frontier,
    )
    lines = ["# zoo report", "", f"Runs: {', '.join(f'`{r.path}`' for r in runs)}", "", *runs_table(runs), ""]
    for i, sweep in enumerate(sweeps):
        lines += sweep_section(sweep, output, f"sweep{i + 1 if len(sweeps) > 1 else ''}_")
    per_class = [line for run in runs for line in per_class_table(run)]
    if per_class:
        lines += ["## Per-class results", "", *per_class]
    bench = bench_table(runs)
    if bench:
        lines += ["## Latency (`zoo bench`)", "", *bench, ""]
    for (name, title, needs), draw in zip(PICTURES, drawers, strict=True):
        drawn = draw(runs, output / name)
        lines.append(f"## {title}")
        lines.append("")
        lines.append(f"![{title}]({name})" if drawn else f"No data for this plot; it needs {needs}.")
        lines.append("")
    report = output / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
