"""``zoo data prepare NAME --from DIR``: check a dataset's files and lay them out under the data root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo_core.cli.common import out, reports_errors
from zoo_core.datasets import PreparedFile, data_root
from zoo_core.datasets import prepare as prepare_dataset

app = typer.Typer(
    name="data",
    help="Lay out the data the bundled recipes read under the data root ($ZOO_DATA_DIR).",
    no_args_is_help=True,
)


@app.command()
@reports_errors
def prepare(
    name: Annotated[str, typer.Argument(metavar="glue|trec", help="the dataset")],
    source: Annotated[
        Path, typer.Option("--from", help="the folder holding your copy of the published files")
    ],
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="skip the sha256 check of the published files")
    ] = False,
) -> None:
    """Check each file's sha256 against the published one and hard-link or copy it under the data root.

    Nothing is downloaded.  The bundled recipes' ``data/NAME/...`` paths then resolve there
    from any directory; a cwd that has them (a clone of the repository) is read first.
    """
    root = data_root()

    def report(done: PreparedFile) -> None:
        checked = "sha256 ok" if done.verified else "not verified"
        out.print(f"{done.name}: {done.how} ({checked})", markup=False)

    placed = prepare_dataset(name, source, verify=not no_verify, root=root, progress=report)
    out.print(f"{name}: {len(placed)} files under {root / name}", markup=False)
