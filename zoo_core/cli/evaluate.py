"""``zoo eval`` and ``zoo predict``: use a checkpoint on a task's split or on new text."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zoo_core.cli.common import out, reports_errors
from zoo_core.errors import DataError, ZooError
from zoo_core.files import display_name

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
        str, typer.Option(help="the split to evaluate (dev, test, train, dev_mismatched, ...)")
    ] = "dev",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="evaluate on this labelled file instead (csv, tsv, jsonl; own task's columns)"
        ),
    ] = None,
    data_format: Annotated[
        str, typer.Option("--format", help="format of --data: auto (by extension), csv, tsv or jsonl")
    ] = "auto",
    data_dir: Annotated[
        Path | None, typer.Option(help="a GLUE task's data folder (default: from zoo.json)")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="confusion-matrix PNG (default: eval-<task>-<split or file>-confusion.png)"),
    ] = None,
    backend: Backend = "torch",
    device: Device = "cpu",
    batch_size: BatchSize = 128,
    max_seq_length: MaxLen = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
) -> None:
    """Evaluate CHECKPOINT on a labelled split of its task, or on any labelled file (--data).

    Prints the task's metrics; for classification also a per-class table (precision,
    recall, F1, support) and a confusion-matrix plot.
    """
    from zoo_core.report.plots import confusion_plot
    from zoo_core.runners.inference import evaluate_checkpoint, load_checkpoint
    from zoo_core.tasks.metrics import confusion, per_class_report

    if data_format not in ("auto", "csv", "tsv", "jsonl"):
        raise DataError(f"--format {data_format!r}: expected auto, csv, tsv or jsonl")
    if data is not None and data_dir is not None:
        raise DataError("give --data FILE or --data-dir DIR, not both")
    loaded = load_checkpoint(checkpoint, task, backend, device)
    result = evaluate_checkpoint(loaded, data_dir, split, batch_size, max_seq_length, data, data_format)
    where = str(data) if data is not None else split
    name = loaded.task.name
    gold = result.dataset.labels
    assert gold is not None  # evaluate_checkpoint reads labelled data only
    per_class = None
    if not loaded.task.is_regression:
        per_class = per_class_report(loaded.task.labels, result.logits, gold)
    if as_json:
        record = {"task": name, "split": where, "examples": len(result.dataset), **result.metrics}
        if per_class is not None:
            record["per_class"] = per_class
        out.print(json.dumps(record), markup=False, highlight=False)
        return
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    if per_class is not None:
        out.print(per_class_table(per_class))
        target = plot or Path(f"eval-{name}-{Path(where).stem if data is not None else split}-confusion.png")
        matrix = confusion(loaded.task.num_labels, result.logits, gold)
        try:
            written = confusion_plot(matrix, loaded.task.labels, target, f"{name}: {where}")
            out.print(f"confusion matrix: {written}", markup=False, highlight=False)
        except ZooError as exc:  # no matplotlib: the numbers above still stand
            out.print(f"no confusion-matrix plot ({exc})", markup=False, highlight=False)
    out.print(f"{name} {where} ({len(result.dataset)} examples): {shown}", markup=False, highlight=False)


def per_class_table(rows: list[dict[str, Any]]) -> Table:
    """A rich table of per-class precision, recall, F1 and support."""
    table = Table(box=None, pad_edge=False)
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for row in rows:
        table.add_row(
            row["label"],
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        )
    return table


@reports_errors
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint directory (e.g. runs/NAME/best)")],
    input_file: Annotated[
        Path,
        typer.Argument(
            help="one example per line (text, or text_a<TAB>text_b; a blank line gets an empty "
            "output line), or a GLUE test.tsv"
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="write here instead of stdout (not the input file)"),
    ] = None,
    task: Task = None,
    probabilities: Annotated[
        bool,
        typer.Option(
            "--probabilities", help="one JSON object a line: the label and every label's probability"
        ),
    ] = False,
    backend: Backend = "torch",
    device: Device = "cpu",
    batch_size: BatchSize = 128,
    max_seq_length: MaxLen = None,
) -> None:
    """Predict a label (or a score) for every example of INPUT_FILE, one per line, in order.

    INPUT_FILE is one example per line (text, or text_a<TAB>text_b), a GLUE test.tsv, or
    for an own task a .csv / .tsv / .jsonl file with the task's text columns.  Output
    line N belongs to input line N: a blank line (an example without text) gets an empty
    line.  The first line is read as a header only when it names the task's text columns
    (as in GLUE's test.tsv) and more lines follow; a single line is always an example.
    """
    from zoo_core.runners.inference import load_checkpoint, predict_file

    if output is not None:
        check_output(output, input_file)
    loaded = load_checkpoint(checkpoint, task, backend, device)
    lines = predict_file(loaded, input_file, batch_size, max_seq_length, probabilities)
    text = "".join(f"{line}\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(output)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise DataError(
                f"--output {display_name(output)}: cannot write ({exc.strerror or exc})"
            ) from None
        out.print(f"{len(lines)} predictions written to {output}")


def check_output(output: Path, input_file: Path) -> None:
    """Refuse an ``--output`` that is the input file itself (or a link to it), or a directory."""
    try:
        same = output.resolve() == input_file.resolve() or (
            output.exists() and input_file.exists() and os.path.samefile(output, input_file)
        )
        is_dir = output.is_dir()
    except (OSError, ValueError):  # a name the filesystem refuses: writing it says so
        return
    if same:
        raise DataError(
            f"--output {display_name(output)} is the input file {display_name(input_file)}; "
            "predictions would overwrite it: choose another file"
        )
    if is_dir:
        raise DataError(f"--output {display_name(output)} is a directory; expected a file name")
