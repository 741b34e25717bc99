"""``zoo bench``: latency and throughput of an export (or of every width of a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo_core.cli.common import out, reports_errors


def _numbers(text: str, kind: type, option: str) -> list[Any]:
    """``"1,32"`` as ``[1, 32]``; a bad list is a one-line error naming the option."""
    from zoo_core.errors import ZooError

    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ZooError(f"{option} {text!r}: expected comma-separated numbers, e.g. 1,32") from None
    if not values or any(v <= 0 for v in values):
        raise ZooError(f"{option} {text!r}: expected positive numbers, e.g. 1,32")
    return values


@reports_errors
def bench(
    source: Annotated[
        Path, typer.Argument(help="an export folder (RUN_DIR/export/width-W) or a run directory")
    ],
    widths: Annotated[
        str | None, typer.Option(help="widths of a DynaBERT run to benchmark, e.g. 1.0,0.8333,0.6667,0.5")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,32",
    seq_lens: Annotated[str, typer.Option(help="comma-separated sequence lengths")] = "64",
    runtimes: Annotated[str, typer.Option(help="onnx, onnx-int8, native and/or native-int8")] = "onnx,native",
    threads: Annotated[int, typer.Option(min=1, help="CPU threads per runtime")] = 2,
    warmup: Annotated[int, typer.Option(min=0, help="untimed runs first")] = 5,
    repeats: Annotated[int, typer.Option(min=1, help="timed runs per measurement")] = 20,
    as_json: Annotated[
        Path | None, typer.Option("--json", help="also write the rows here (default: SOURCE/bench.json)")
    ] = None,
) -> None:
    """Latency (median, p90) and throughput of SOURCE on each runtime it was exported for.

    A run directory is benchmarked at each of --widths (exporting what is missing); an
    export folder as it is.  Prints a table; writes the rows as JSON.
    """
    from zoo_core.runners.bench import bench as run_bench
    from zoo_core.runners.bench import format_table

    rows = run_bench(
        source,
        widths=_numbers(widths, float, "--widths") if widths else None,
        runtimes=[r.strip() for r in runtimes.split(",") if r.strip()],
        batch_sizes=_numbers(batch_sizes, int, "--batch-sizes"),
        seq_lens=_numbers(seq_lens, int, "--seq-lens"),
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        say=lambda line: out.print(line, markup=False),
    )
    out.print(format_table(rows), markup=False)
    target = as_json or source / "bench.json"
    settings = {
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "inputs": "synthetic, unpadded, seed 0",
    }
    target.write_text(
        json.dumps({"settings": settings, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n"
    )
    out.print(f"wrote {target}", markup=False)
