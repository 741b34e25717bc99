"""``zoo bench``: latency and throughput of exported models, on every runtime an export has.

A source is an export folder (``RUN_DIR/export/width-W/``, as ``zoo export`` writes it)
or a run directory, in which case each requested width's export folder is used and
made first (ONNX and native, verified) when it is missing.  Every model runs on the
same synthetic batch for a given shape (token ids drawn with a fixed seed, no
padding), so widths and runtimes compare like with like: after ``warmup`` untimed
runs, ``repeats`` runs are timed one by one and summarised as median and 90th
percentile latency, and throughput (examples per second at the median).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT, Batch
from zoo_core.errors import ExportError, ModelError
from zoo_core.files import Count, check_fields, load_json
from zoo_core.runners.export import export_checkpoint
from zoo_core.runners.int8 import INT8_FORMAT, NATIVE_INT8_FORMAT, Int8Spec

#: the runtimes ``zoo bench`` knows: onnxruntime for ``onnx/`` and ``onnx-int8/`` (``zoo export
#: --quantize int8``), the exporting backend for ``native/`` and ``native-int8/`` (``zoo export
#: -f native --quantize int8``, backends with the ``int8`` capability)
RUNTIMES = ("onnx", "onnx-int8", "native", "native-int8")
#: how each runtime's rows are labelled
RUNTIME_LABELS = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime-int8"}


@dataclass(frozen=True)
class BenchRow:
    """One measurement: a model (width, runtime) at one input shape."""

    width: float
    runtime: str
    batch_size: int
    seq_len: int
    median_ms: float
    p90_ms: float
    samples_per_s: float
    model_mb: float
    #: the export's dev metric when its export.json records one (INT8: ``quantization.metric``)
    metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return asdict(self)


#: types of the export.json fields the benchmark reads
EXPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "width_mult": float,
    "vocab_size": Count,
    "max_position_embeddings": Count,
    "backend": str,
}


def export_meta(folder: Path) -> dict[str, Any]:
    """The export.json an export folder's formats carry (width, backend, config), merged."""
    meta: dict[str, Any] = {}
    for fmt in RUNTIMES:
        path = folder / fmt / "export.json"
        if path.is_file():
            context = "unreadable (export again with zoo export)"
            data = load_json(path, error=ModelError, context=context)
            check_fields(data, EXPORT_FIELDS, path, error=ModelError, context=context)
            meta.update(data)
    if not meta:
        raise ModelError(
            f"{folder}: no onnx/, onnx-int8/, native/ or native-int8/ export inside; make one with zoo export"
        )
    return meta


def export_folders(
    source: Path,
    widths: Sequence[float] | None,
    say: Callable[[str], None],
    runtimes: Sequence[str] = RUNTIMES,
) -> list[Path]:
    """The folders to benchmark: ``source`` itself, or a run's folder per width (exported if missing)."""
    is_run = (source / "recipe.yaml").is_file() and (source / "best").is_dir()
    if not is_run:
        if widths:
            raise ModelError(f"{source}: --widths needs a run directory; this is one export folder")
        if not source.is_dir():
            raise ModelError(f"{source}: no such export folder or run directory")
        export_meta(source)
        return [source]
    folders = []
    for width in widths or [1.0]:
        folder = source / "export" / f"width-{width:g}"
        missing = [fmt for fmt in runtimes if not (folder / fmt / "export.json").is_file()]
        if missing:
            say(
                f"width {width:g}: no {' or '.join(missing)} export yet; "
                f"exporting it (zoo export --width-mult {width:g})"
            )
            native_int8 = NATIVE_INT8_FORMAT in missing
            formats = [fmt for fmt in missing if fmt not in (INT8_FORMAT, NATIVE_INT8_FORMAT)]
            if native_int8 and "native" not in formats:
                formats.append("native")  # the fp32 model native-int8 is judged against
            int8 = Int8Spec() if INT8_FORMAT in missing or native_int8 else None
            results = export_checkpoint(
                source,
                formats,  # type: ignore[arg-type]
                width_mult=width,
                int8=int8,
                native_int8=native_int8,
                say=say,
            )
            folder = results[0].path.parent
        folders.append(folder)
    return folders


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> Batch:
    """``batch_size`` unpadded sequences of ``seq_len`` token ids drawn from the vocabulary with ``seed``."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, seq_len)
    return Batch(
        input_ids=rng.integers(1, vocab_size, size=shape, dtype=np.int64),
        token_type_ids=np.zeros(shape, dtype=np.int64),
        attention_mask=np.ones(shape, dtype=np.int64),
        labels=None,
    )


def onnx_runner(path: Path, threads: int) -> Callable[[Batch], Any]:
    """A function running the ONNX model at ``path`` in onnxruntime with ``threads`` intra-op threads."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("benchmarking ONNX needs onnxruntime: pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: Batch) -> Any:
        arrays = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        return session.run([EXPORT_OUTPUT], dict(zip(EXPORT_INPUTS, arrays, strict=True)))

    return run


def native_runner(folder: Path, backend_name: str, threads: int) -> Callable[[Batch], Any]:
    """A function running the export in ``folder`` (``native/``, ``native-int8/``) with its backend."""
    from zoo_core.backend import capable
    from zoo_core.plugins import create_backend

    backend = create_backend(backend_name, "cpu", {"threads": threads})
    files = [p for p in folder.iterdir() if p.name != "export.json"]
    if folder.name == NATIVE_INT8_FORMAT:
        return capable(backend, "int8").load_native_int8(files[0])
    return capable(backend, "export").load_native(files[0])


def time_runs(run: Callable[[Batch], Any], batch: Batch, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` runs of ``run(batch)`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def recorded_metric(fmt_dir: Path) -> float | None:
    """The dev metric an export recorded for itself (``zoo export --quantize int8`` does), else None."""
    record = load_json(fmt_dir / "export.json", error=ModelError).get("quantization")
    value = record.get("metric") if isinstance(record, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def folder_size_mb(folder: Path) -> float:
    """Size of the files in ``folder`` in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def bench(
    source: Path,
    *,
    widths: Sequence[float] | None = None,
    runtimes: Sequence[str] = RUNTIMES,
    batch_sizes: Sequence[int] = (1, 32),
    seq_lens: Sequence[int] = (64,),
    threads: int = 2,
    warmup: int = 5,
    repeats: int = 20,
    say: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Benchmark every (width, runtime, batch size, sequence length) of ``source``; see the module doc."""
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ModelError(f"unknown runtime {unknown[0]!r}; expected one of {', '.join(RUNTIMES)}")
    rows = []
    for folder in export_folders(source, widths, say, runtimes):
        meta = export_meta(folder)
        width = float(meta.get("width_mult", 1.0))
        vocab_size = int(meta.get("vocab_size", 100))
        longest = int(meta.get("max_position_embeddings", max(seq_lens)))
        if max(seq_lens) > longest:
            raise ModelError(
                f"{folder}: sequence length {max(seq_lens)} exceeds the model's {longest} positions"
            )
        for runtime in runtimes:
            fmt_dir = folder / runtime
            if not (fmt_dir / "export.json").is_file():
                say(f"width {width:g}: no {runtime} export in {folder}; skipped")
                continue
            if runtime in RUNTIME_LABELS:
                run, label = onnx_runner(fmt_dir / "model.onnx", threads), RUNTIME_LABELS[runtime]
            else:
                name = str(meta.get("backend", "torch"))
                run, label = native_runner(fmt_dir, name, threads), f"{name} {runtime}"
            for batch_size in batch_sizes:
                for seq_len in seq_lens:
                    batch = synthetic_batch(batch_size, seq_len, vocab_size)
                    times = time_runs(run, batch, warmup, repeats)
                    median = float(np.median(times))
                    rows.append(
                        BenchRow(
                            width=width,
                            runtime=label,
                            batch_size=batch_size,
                            seq_len=seq_len,
                            median_ms=median,
                            p90_ms=float(np.percentile(times, 90)),
                            samples_per_s=batch_size / median * 1e3,
                            model_mb=folder_size_mb(fmt_dir),
                            metric=recorded_metric(fmt_dir),
                        )
                    )
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """The rows as an aligned text table, with each row's latency relative to width 1 of its kind."""
    base = {(r.runtime, r.batch_size, r.seq_len): r.median_ms for r in rows if r.width == 1.0}
    lines = [
        f"{'width':>7} {'runtime':<18} {'batch':>5} {'seq':>4} {'median ms':>10} {'p90 ms':>8} "
        f"{'samples/s':>10} {'vs w=1':>7} {'MB':>6}"
    ]
    for r in rows:
        ref = base.get((r.runtime, r.batch_size, r.seq_len))
        ratio = f"{r.median_ms / ref:6.2f}x" if ref else f"{'—':>7}"
        lines.append(
            f"{r.width:>7g} {r.runtime:<18} {r.batch_size:>5} {r.seq_len:>4} {r.median_ms:>10.2f} "
            f"{r.p90_ms:>8.2f} {r.samples_per_s:>10.1f} {ratio} {r.model_mb:>6.1f}"
        )
    return "\n".join(lines)
