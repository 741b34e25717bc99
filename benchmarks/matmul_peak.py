"""This machine's dense matmul peak in torch: the best sustained GFLOP/s of a GEMM, per dtype.

    .venv/bin/python benchmarks/matmul_peak.py [--threads 2] [--seconds 2] [--json peak.json]

For each dtype — float32, and bfloat16 where the CPU has native bf16 instructions
(``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo, and oneDNN's check
``torch.ops.mkldnn._is_mkldnn_bf16_supported()``; elsewhere bf16 is emulated and its
figure would not be a peak) — ``torch.mm`` is timed on the shapes a MiniLM-L6-H384
training step multiplies (``M = 2048`` tokens = batch 32 x 64: the FFN's 384->1536 and
1536->384, a 384->384 projection, a backward's weight gradient) and on a large square
(2048^3).  Each shape runs for ``--seconds`` in windows of several calls after a warm-up;
its figure is the best window's mean (sustained, not one lucky call), and a dtype's
peak is the best shape's.  ``torch.set_num_threads(--threads)``: 2, as every zoo
benchmark here runs.  A multiply-add is 2 FLOPs: ``2·M·K·N`` per call.

On a shared machine the figures are lower than the hardware's: label them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from zoo_core.cpu_features import cpu_flags, cpu_model

#: (name, M, K, N): C[M, N] = A[M, K] @ B[K, N]
SHAPES = (
    ("FFN in 2048x384x1536", 2048, 384, 1536),
    ("FFN out 2048x1536x384", 2048, 1536, 384),
    ("projection 2048x384x384", 2048, 384, 384),
    ("weight grad 384x2048x1536", 384, 2048, 1536),
    ("square 2048x2048x2048", 2048, 2048, 2048),
)


def bf16_support() -> tuple[bool, str]:
    """Whether this CPU multiplies bf16 natively, and why (or why not)."""
    flags = (cpu_flags() or frozenset()) & {"avx512_bf16", "amx_bf16", "amx_tile"}
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    mkldnn = torch.backends.mkldnn.is_available()
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    why = (
        f"cpu flags {', '.join(sorted(flags)) or 'without avx512_bf16/amx_bf16'}; "
        f"torch.backends.mkldnn available: {mkldnn}; oneDNN bf16 supported: {onednn}"
    )
    return native and mkldnn and onednn, why


def measure(m: int, k: int, n: int, dtype: torch.dtype, seconds: float) -> dict[str, float]:
    """Best-window and median-window GFLOP/s of ``torch.mm`` on ``[m, k] @ [k, n]`` in ``dtype``."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    flops = 2 * m * k * n
    start = time.perf_counter()
    torch.mm(a, b, out=out)
    one = time.perf_counter() - start
    per_window = max(1, int(0.2 / max(one, 1e-6)))  # windows of ~0.2 s
    for _ in range(per_window):  # warm-up: caches, thread pool, frequency
        torch.mm(a, b, out=out)
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        for _ in range(per_window):
            torch.mm(a, b, out=out)
        rates.append(flops * per_window / (time.perf_counter() - start) / 1e9)
    rates.sort()
    return {"best_gflops": rates[-1], "median_gflops": rates[len(rates) // 2], "windows": len(rates)}


def load_average() -> str:
    """The 1/5/15-minute load averages (``?`` where the OS has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per shape and dtype")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bf16, why = bf16_support()
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bf16 else {})}
    load_before = load_average()
    rows = []
    for label, dtype in dtypes.items():
        for name, m, k, n in SHAPES:
            rows.append(
                {
                    "dtype": label,
                    "shape": name,
                    "m": m,
                    "k": k,
                    "n": n,
                    **measure(m, k, n, dtype, args.seconds),
                }
            )
    peaks = {label: max(r["best_gflops"] for r in rows if r["dtype"] == label) for label in dtypes}
    env = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "bf16": why,
    }
    print(f"cpu: {env['cpu']}, {args.threads} torch threads, torch {env['torch']}")
    print(f"load average (1/5/15 min) before {load_before}, after {env['load_average_after']}")
    print(f"bf16: {'measured' if bf16 else 'not measured'} ({why})")
    print()
    print(f"{'dtype':<5} {'shape':<28} {'best GFLOP/s':>12} {'median':>8} {'windows':>7}")
    for r in rows:
        best, median = f"{r['best_gflops']:>12.1f}", f"{r['median_gflops']:>8.1f}"
        print(f"{r['dtype']:<5} {r['shape']:<28} {best} {median} {r['windows']:>7}")
    print()
    for label, peak in peaks.items():
        print(f"peak {label}: {peak:.1f} GFLOP/s")
    if args.json is not None:
        args.json.write_text(json.dumps({"environment": env, "rows": rows, "peaks": peaks}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
