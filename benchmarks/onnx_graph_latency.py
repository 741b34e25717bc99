"""ONNX Runtime latency of the core's ONNX graph (plain and fused) against the torch backend's export.

    .venv/bin/python benchmarks/onnx_graph_latency.py CHECKPOINT_DIR [--out DIR] [--batch-size 32]
        [--seq-len 64] [--threads 2] [--warmup 10] [--blocks 10] [--runs-per-block 5]

Three files of the same checkpoint:

* ``core``: :func:`zoo_core.onnx_export.write_onnx` (``OUT/core/model.onnx``);
* ``core-fused``: that file through :func:`zoo_core.onnx_export.optimize_onnx`
  (``OUT/core/model_fused.onnx``; the fusion counts are printed);
* ``torch``: the torch backend's own ``torch.onnx`` export (``OUT/torch/onnx/model.onnx``;
  made once, reused when present), what ``zoo export -f onnx`` wrote before the core graph.

Each runs in its own onnxruntime CPU session (``intra_op_num_threads=threads``,
``inter_op_num_threads=1``, all graph optimisations) on one batch of ``batch-size`` rows of
random tokens, ``seq-len`` wide, rows padded at the end to random lengths from half to all
of ``seq-len`` (the first row full).  The three must agree on the logits (the largest
difference is printed).  After ``warmup`` untimed runs each, the models are timed in
interleaved blocks, A B C A B C ..., ``runs-per-block`` single runs per block, so a change
in the machine's load hits every model alike.  The table gives the median and 90th
percentile of the single runs in milliseconds and the median's ratio to ``torch``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from zoo_core.backend import EXPORT_INPUTS, EXPORT_OUTPUT
from zoo_core.checkpoint import open_model_dir
from zoo_core.onnx_export import optimize_onnx, write_onnx


def torch_export(checkpoint: Path, out: Path) -> Path:
    """The torch backend's own ONNX export (``torch.onnx``) of ``checkpoint`` under ``out``.

    Not ``zoo export -f onnx``, which writes the core's graph for every backend since
    2026-12-03: this is the exporter that graph replaced, the baseline it is measured against.
    """
    path = out / "onnx" / "model.onnx"
    if not path.is_file():
        from zoo_core.backend import capable
        from zoo_core.plugins import create_backend
        from zoo_core.testing.conformance.helpers import tiny_batch

        model_dir = open_model_dir(checkpoint)
        backend = create_backend("torch", "cpu", {})
        model = backend.build_model(model_dir.config)
        backend.load_weights(model, model_dir.load_weights())
        example = tiny_batch(seed=0, batch_size=4, max_len=12)
        path = capable(backend, "export").export(model, out / "onnx", "onnx", example)
    return path


def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tokens (two segments), rows padded at the end to lengths from ``seq_len // 2`` up."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(seq_len // 2, seq_len + 1, batch_size)
    lengths[0] = seq_len
    mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1000, vocab_size, (batch_size, seq_len)) * mask
    types = (np.arange(seq_len)[None, :] >= (lengths // 2)[:, None]).astype(np.int64) * mask
    return dict(zip(EXPORT_INPUTS, (ids, types, mask), strict=True))


def session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session on ``threads`` intra-op threads with every graph optimisation on."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_times(
    sessions: dict[str, onnxruntime.InferenceSession],
    feed: dict[str, np.ndarray],
    warmup: int,
    blocks: int,
    runs_per_block: int,
) -> dict[str, list[float]]:
    """Milliseconds of every single run, per model, timed in blocks A B C A B C ... after warm-up."""
    for s in sessions.values():
        for _ in range(warmup):
            s.run([EXPORT_OUTPUT], feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(blocks):
        for name, s in sessions.items():
            for _ in range(runs_per_block):
                start = time.perf_counter()
                s.run([EXPORT_OUTPUT], feed)
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    """Write the three files, check they agree, time them and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--runs-per-block", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, args.out or Path(tmp))


def run(args: argparse.Namespace, out: Path) -> int:
    """:func:`main` with the output folder ``out``."""
    model_dir = open_model_dir(args.checkpoint)
    config = model_dir.config
    core = write_onnx(config, model_dir.load_weights(), out / "core" / "model.onnx")
    fused = out / "core" / "model_fused.onnx"
    counts = optimize_onnx(core, fused, config)
    paths = {"torch": torch_export(args.checkpoint, out / "torch"), "core": core, "core-fused": fused}

    feed = random_batch(config.vocab_size, args.batch_size, args.seq_len)
    sessions = {name: session(path, args.threads) for name, path in paths.items()}
    logits = {name: s.run([EXPORT_OUTPUT], feed)[0] for name, s in sessions.items()}
    times = interleaved_times(sessions, feed, args.warmup, args.blocks, args.runs_per_block)

    print(f"\n# ONNX Runtime latency: the core's graph vs the torch export — {args.checkpoint}")
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}  onnxruntime "
        f"{onnxruntime.__version__}  batch {args.batch_size} x seq {args.seq_len}  threads {args.threads}  "
        f"{args.blocks} blocks x {args.runs_per_block} runs after {args.warmup} warm-up"
    )
    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(f"# fused operators: {', '.join(f'{op} {n}' for op, n in counts.items() if n)}")
    for name in ("core", "core-fused"):
        print(f"# max |logits - torch's|: {name} {np.abs(logits[name] - logits['torch']).max():.2e}")
    base = float(np.median(times["torch"]))
    print(f"{'model':>11} {'median ms':>10} {'p90 ms':>8} {'vs torch':>9} {'nodes':>6}")
    for name, path in paths.items():
        median, p90 = float(np.median(times[name])), float(np.percentile(times[name], 90))
        nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
        print(f"{name:>11} {median:>10.1f} {p90:>8.1f} {median / base:>8.2f}x {nodes:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
