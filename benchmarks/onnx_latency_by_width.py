"""ONNX Runtime latency of a DynaBERT run's sub-models, width by width.

    .venv/bin/python benchmarks/onnx_latency_by_width.py [RUN_DIR] [--widths 1,0.8333,0.6667,0.5]
        [--batch-size 32] [--seq-len 64] [--threads 2] [--warmup 10] [--repeats 50] [--json out.json]

For every width the run's ONNX export (``RUN_DIR/export/width-W/onnx/model.onnx``) is used,
and made first with ``zoo export RUN_DIR --width-mult W --format onnx`` (verified against the
trained sub-model) when it is missing.  Each model runs in its own onnxruntime session on
the CPU (``intra_op_num_threads=threads``, ``inter_op_num_threads=1``, all graph
optimisations) on the same batch: the first ``batch-size`` examples of the run's dev split,
every one padded (or cut) to ``seq-len`` tokens, so every width sees identical inputs.
After ``warmup`` untimed runs, ``repeats`` runs are timed one by one; the table gives the
median and 90th percentile in milliseconds and the median's ratio to width 1.0.  The
acceptance target is width 0.5 <= 0.6x width 1.0.  Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT
from zoo_core.checkpoint import open_model_dir
from zoo_core.data.batching import collate
from zoo_core.runners.export import export_checkpoint, resolve_source
from zoo_core.runners.inference import load_checkpoint, load_split


def onnx_file(run_dir: Path, width: float) -> Path:
    """The run's ONNX export at ``width``, exported (and verified) first if missing."""
    path = run_dir / "export" / f"width-{width:g}" / "onnx" / "model.onnx"
    if not path.is_file():
        print(f"exporting width {width:g} (zoo export {run_dir} --width-mult {width:g} --format onnx)")
        export_checkpoint(run_dir, ["onnx"], width_mult=width, say=lambda line: print(line))
    return path


def dev_batch(run_dir: Path, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """The first ``batch_size`` dev examples of the run's task, each padded or cut to ``seq_len``."""
    checkpoint_dir, _ = resolve_source(run_dir)
    loaded = load_checkpoint(open_model_dir(checkpoint_dir), None, "torch", "cpu")
    dataset = load_split(loaded, None, "dev", max_seq_length=seq_len)
    batch = collate(dataset, np.arange(min(batch_size, len(dataset))))
    arrays = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
    padded = [np.pad(a, ((0, 0), (0, seq_len - a.shape[1]))).astype(np.int64) for a in arrays]
    return dict(zip(EXPORT_INPUTS, padded, strict=True))


def time_model(
    path: Path, feed: dict[str, np.ndarray], threads: int, warmup: int, repeats: int
) -> list[float]:
    """Wall time (ms) of ``repeats`` single runs of the model on ``feed``, after ``warmup`` runs."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run([EXPORT_OUTPUT], feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run([EXPORT_OUTPUT], feed)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    """Benchmark every width and print (and optionally save) the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", nargs="?", type=Path, default=Path("runs/dynabert_sst2"))
    parser.add_argument("--widths", default="1,0.8333,0.6667,0.5")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.run_dir / "result.json").is_file():
        print(f"error: {args.run_dir}: no finished run (run `zoo run dynabert_sst2` first)")
        return 2
    widths = [float(w) for w in args.widths.split(",")]
    paths = {w: onnx_file(args.run_dir, w) for w in widths}
    feed = dev_batch(args.run_dir, args.batch_size, args.seq_len)

    rows: list[dict[str, Any]] = []
    for width in widths:
        times = time_model(paths[width], feed, args.threads, args.warmup, args.repeats)
        rows.append(
            {
                "width": width,
                "median_ms": float(np.median(times)),
                "p90_ms": float(np.percentile(times, 90)),
                "model_mb": paths[width].stat().st_size / 2**20,
            }
        )
    base = next((r["median_ms"] for r in rows if r["width"] == 1.0), rows[0]["median_ms"])
    print(f"\n# ONNX Runtime latency by width — {args.run_dir}")
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}  onnxruntime "
        f"{onnxruntime.__version__}  batch {args.batch_size} x seq {args.seq_len}  threads {args.threads}  "
        f"{args.repeats} runs after {args.warmup} warm-up"
    )
    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(f"{'width':>8} {'median ms':>10} {'p90 ms':>8} {'vs 1.0':>7} {'model MB':>9}")
    for row in rows:
        row["ratio"] = row["median_ms"] / base
        print(
            f"{row['width']:>8g} {row['median_ms']:>10.1f} {row['p90_ms']:>8.1f} "
            f"{row['ratio']:>6.2f}x {row['model_mb']:>9.1f}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
