"""``zoo export``: deployable files from a run, each checked against the trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo_core.cli.common import out, reports_errors


@reports_errors
def export(
    source: Annotated[
        Path | None, typer.Argument(help="a run directory or checkpoint (default: the most recent run)")
    ] = None,
    width_mult: Annotated[float, typer.Option(help="width to export (DynaBERT width runs only)")] = 1.0,
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", "-f", help="portable, onnx or native (repeatable; default: all three)"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="default: RUN_DIR/export/width-W/")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", "-b", help="backend that exports (default: the one that trained it, else torch)"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, gpu or ascend")] = "cpu",
    data_dir: Annotated[Path | None, typer.Option(help="the task's data (default: from zoo.json)")] = None,
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: also write onnx-int8/ (with the native format, native-int8/ too), "
            "accepted by the dev metric"
        ),
    ] = None,
    calibrate: Annotated[
        int, typer.Option(min=0, help="INT8: static, calibrated on N training examples (default 0: dynamic)")
    ] = 0,
    max_drop: Annotated[
        float, typer.Option(min=0.0, help="INT8: largest accepted drop of the dev metric, in points")
    ] = 1.0,
) -> None:
    """Export a model as a portable checkpoint, ONNX and the backend's native format.

    Every export is loaded back and must reproduce the trained model's logits on a
    dev batch within 1e-4; its dev metric is printed.  ``--quantize int8`` also writes
    an INT8 ONNX (onnxruntime's quantizer), kept only if its dev metric is within
    ``--max-drop`` points of the fp32 ONNX's, and with the native format the backend's own
    INT8 model (``native-int8/``, torch's dynamic quantization) judged the same way against
    the fp32 native export.  ``-f native`` asked for explicitly with ``--quantize int8``
    requires it: a backend without native INT8 is refused before any work.
    """
    from zoo_core.errors import ExportError
    from zoo_core.runners.export import FORMATS, export_checkpoint
    from zoo_core.runners.int8 import Int8Spec

    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize!r}: expected int8")
    if quantize is None and (calibrate or max_drop != 1.0):
        raise ExportError("--calibrate and --max-drop need --quantize int8")

    chosen = formats or list(FORMATS)
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r}; expected one of {', '.join(FORMATS)}")
    export_checkpoint(
        source,
        chosen,  # type: ignore[arg-type]
        width_mult=width_mult,
        output=output,
        backend_name=backend,
        device=device,
        data_dir=data_dir,
        int8=None if quantize is None else Int8Spec(calibrate=calibrate, max_drop=max_drop),
        # -f native with --quantize int8 asks for native-int8/; the default formats write it if possible
        native_int8=True if formats else None,
        say=lambda line: out.print(line, markup=False),
    )
