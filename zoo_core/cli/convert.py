"""``zoo convert``: a checkpoint from one framework's format to another's, verified by logits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo_core.cli.common import out, reports_errors


@reports_errors
def convert(
    source: Annotated[
        Path,
        typer.Argument(
            help="a run, a model directory, or a weights file (.safetensors .bin .pt .pdparams .ckpt)"
        ),
    ],
    to: Annotated[str, typer.Option("--to", help="hf, torch, paddle or mindspore")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="default: SOURCE_DIR-TO beside it")
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", help="allow reading pickle files (.bin .pt .pdparams), which can run code"
        ),
    ] = False,
) -> None:
    """Convert SOURCE to a Hugging Face directory or a torch / PaddleNLP / MindSpore checkpoint.

    The written checkpoint is loaded back on its framework and must give the source's
    logits within 1e-4, or nothing is kept.
    """
    from zoo_core.convert import convert as run_convert

    run_convert(source, to, output, trust_pickle=trust_pickle, say=lambda line: out.print(line, markup=False))
