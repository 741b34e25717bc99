"""``zoo report``: a Markdown report with plots comparing finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo_core.cli.common import out, reports_errors


@reports_errors
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(help="finished run directories (e.g. runs/finetune_sst2 runs/dynabert_sst2)"),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for report.md and its PNGs")] = Path(
        "report"
    ),
) -> None:
    """Compare RUNS in OUTPUT/report.md: metrics, wall time, memory, and plots.

    Plots: training loss and learning rate, dev metric per evaluation, dev metric by
    width, latency by width and the accuracy-latency frontier (the last two from
    each run's bench.json, written by zoo bench).
    """
    from zoo_core.report.markdown import build_report

    path = build_report(runs, output)
    pictures = sorted(p.name for p in output.glob("*.png"))
    out.print(f"wrote {path} ({', '.join(pictures) or 'no plots'})", markup=False)
