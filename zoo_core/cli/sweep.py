"""``zoo sweep RECIPE --grid FIELD=V1,V2``: a hyper-parameter search, one ordinary run per trial."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zoo_core.cli.common import out, reports_errors
from zoo_core.errors import ZooError

if TYPE_CHECKING:
    from zoo_core.sweep.spec import Sweep
    from zoo_core.sweep.study import TrialRow


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def print_table(sweep: Sweep, rows: list[TrialRow]) -> None:
    """The trials (settings, dev metric, state, wall time) and the best one."""
    from rich.table import Table

    from zoo_core.sweep.spec import format_value, short_names
    from zoo_core.sweep.study import best_row

    names = short_names(list(sweep.grid))
    best = best_row(rows)
    table = Table(title=f"zoo sweep {sweep.directory}", title_justify="left")
    table.add_column("trial", justify="right")
    for name in names.values():
        table.add_column(name, justify="right")
    table.add_column(f"dev {sweep.metric}", justify="right")
    table.add_column("wall", justify="right")
    table.add_column("state")
    for row in rows:
        metric = "—" if row.value is None else f"{row.value:.4f}"
        state = row.state.lower() + (
            f" {row.note}" if row.state == "PRUNED" else f": {row.note}" if row.note else ""
        )
        cells = [format_value(row.params.get(key)) for key in names]
        mark = " <- best" if row is best else ""
        table.add_row(str(row.number), *cells, metric, _wall(row.wall_seconds), state + mark)
    out.print(table)
    if best is None:
        out.print("no trial has finished yet; run the same command to go on", markup=False)
        return
    settings = " ".join(f"{names[k]}={format_value(v)}" for k, v in best.params.items())
    out.print(
        f"best: trial {best.number}  {settings}  dev {sweep.metric} {best.value:.4f}  "
        f"({sweep.directory / best.run_dir / 'best'})",
        markup=False,
    )
    out.print(f"export it: zoo export {sweep.directory}", markup=False)


def _choice(value: str | None, option: str, choices: tuple[str, ...]) -> Any:
    if value is not None and value not in choices:
        raise ZooError(f"{option} {value!r}: expected one of {', '.join(choices)}")
    return value


@reports_errors
def sweep(
    recipe: Annotated[str, typer.Argument(help="a recipe file, or the name of a bundled recipe")],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="a field and its values: --grid train.learning_rate=3e-4,1e-4 (repeatable; "
            "default: the recipe file's sweep: grid)",
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="trials in all (default: every grid point)")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="grid (default) or tpe (Optuna's samplers)")] = None,
    metric: Annotated[
        str | None, typer.Option(help="dev metric to maximise (default: the task's main metric)")
    ] = None,
    pruner: Annotated[
        str | None,
        typer.Option(help="median (default: stop a trial whose dev metric is below the median) or none"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL shared by the workers (default: sqlite:///SWEEP_DIR/sweep.db)"),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="the sweep directory (default: runs/<recipe name>-sweep)"),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="backend every trial runs on (see `zoo backends`)")
    ] = "torch",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a field in every trial: --set train.max_steps=60"),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no training progress; trials and table only")
    ] = False,
) -> None:
    """Search hyper-parameters: one ordinary run per trial, chosen, pruned and stored by Optuna.

    Each trial runs RECIPE with its settings in SWEEP_DIR/trials/<settings>/.  An
    interrupted sweep resumes when run again (finished trials are not repeated);
    several `zoo sweep` processes on one --storage share the trials.  Ends with a
    table of the trials and the best one, whose best/ `zoo export SWEEP_DIR` exports.
    """
    from zoo_core.cli.run import sigterm_as_interrupt
    from zoo_core.sweep.spec import build_sweep

    spec = build_sweep(
        recipe,
        grid or [],
        overrides=overrides or [],
        backend=backend,
        sampler=_choice(sampler, "--sampler", ("grid", "tpe")),
        trials=trials,
        metric=metric,
        pruner=_choice(pruner, "--pruner", ("median", "none")),
        storage=storage,
        output=output,
    )
    from zoo_core.plugins import get_backend_spec

    get_backend_spec(backend)  # an unknown backend: one line now, not in the first trial
    try:
        from zoo_core.sweep.study import run_sweep, save_summary
    except ImportError as exc:
        if exc.name not in ("optuna", "sqlalchemy"):
            raise
        raise ZooError("zoo sweep runs on Optuna: pip install 'zoo-core[sweep]'") from None

    def say(line: str) -> None:
        out.print(line, markup=False)

    with sigterm_as_interrupt():
        study = run_sweep(spec, out, progress=not quiet, say=say)
    print_table(spec, save_summary(spec, study))
