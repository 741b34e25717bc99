"""The ``zoo`` command: a typer app whose commands live one per module in this package.

Start-up imports typer and rich only; each command imports what it needs when it
runs, and no command imports a framework except through the backend it was asked for.
"""

from __future__ import annotations

import typer

from zoo_core import __version__
from zoo_core.cli.bench import bench
from zoo_core.cli.convert import convert
from zoo_core.cli.data import app as data_app
from zoo_core.cli.evaluate import evaluate, predict
from zoo_core.cli.export import export
from zoo_core.cli.listing import backends, models, recipes
from zoo_core.cli.plan import plan
from zoo_core.cli.report import report
from zoo_core.cli.run import run
from zoo_core.cli.sweep import sweep
from zoo_core.cli.validate import validate

app = typer.Typer(
    name="zoo",
    help="Fine-tune, distil (TinyBERT), shrink (DynaBERT) and export BERT-family models on any framework.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(run)
app.command()(sweep)
app.command()(validate)
app.command("eval")(evaluate)
app.command()(predict)
app.command()(export)
app.command()(bench)
app.command()(report)
app.command()(plan)
app.command()(convert)
app.command()(backends)
app.command()(models)
app.command()(recipes)
app.add_typer(data_app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Fine-tune, distil (TinyBERT), shrink (DynaBERT) and export BERT-family models on any framework."""


def main() -> None:
    """Entry point of the ``zoo`` console script."""
    app()
