"""``zoo eval`` and ``zoo predict``: use a checkpoint on a task's split or on new text."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from zoo_core.cli.common import out, reports_errors

Backend = Annotated[str, typer.Option("--backend", "-b", help="backend to run on")]
Device = Annotated[str, typer.Option(help="cpu, gpu or ascend")]
Task = Annotated[str | None, typer.Option(help="GLUE task (default: the one in the checkpoint's zoo.json)")]
BatchSize = Annotated[int, typer.Option(min=1, help="examples per batch")]
MaxLen = Annotated[
    int | None, typer.Option(min=8, help="truncation length (default: the checkpoint's recipe, else 128)")
]


@reports_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint directory (e.g. runs/NAME/best)")],
    task: Task = None,
    split: Annotated[
        str, typer.Option(help="the split to evaluate (dev, train, dev_mismatched, ...)")
    ] = "dev",
    data_dir: Annotated[
        Path | None, typer.Option(help="the task's data folder (default: from zoo.json)")
    ] = None,
    backend: Backend = "torch",
    device: Device = "cpu",
    batch_size: BatchSize = 128,
    max_seq_length: MaxLen = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
) -> None:
    """Evaluate CHECKPOINT on a labelled split of its task."""
    from zoo_core.runners.inference import evaluate_checkpoint, load_checkpoint

    loaded = load_checkpoint(checkpoint, task, backend, device)
    metrics, dataset = evaluate_checkpoint(loaded, data_dir, split, batch_size, max_seq_length)
    if as_json:
        out.print(json.dumps({"task": loaded.task.name, "split": split, "examples": len(dataset), **metrics}))
    else:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        out.print(f"{loaded.task.name} {split} ({len(dataset)} examples): {shown}")


@reports_errors
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint directory (e.g. runs/NAME/best)")],
    input_file: Annotated[
        Path, typer.Argument(help="one example per line (text, or text_a<TAB>text_b), or a GLUE test.tsv")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
    task: Task = None,
    backend: Backend = "torch",
    device: Device = "cpu",
    batch_size: BatchSize = 128,
    max_seq_length: MaxLen = None,
) -> None:
    """Predict a label (or a score) for every line of INPUT_FILE, one per line, in order."""
    from zoo_core.runners.inference import load_checkpoint, predict_file

    loaded = load_checkpoint(checkpoint, task, backend, device)
    lines = predict_file(loaded, input_file, batch_size, max_seq_length)
    text = "".join(f"{line}\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
        out.print(f"{len(lines)} predictions written to {output}")
