"""Every benchmark zoo promises, side by side in one invocation, written up as Markdown.

    .venv/bin/python benchmarks/run.py [--quick] [--only peak,torch,paddle,mindspore,latency,parity]
        [--run runs/dynabert_sst2] [--output benchmarks/results/DATE.md] [--no-readme]

Runs, one after the other, each in a process of its own (frameworks cannot all share one):

* this machine's dense matmul peak, once (``matmul_peak.py``: torch GEMM at 2 threads, fp32
  and bf16 where the CPU has it), so every training figure is also read as GFLOP/s and
  a share of that peak;
* training throughput of each backend against its reference-style loop:
  ``train_throughput.py`` (torch vs Hugging Face: padded, dynamically padded, and
  length-grouped as ``group_by_length=True`` does it),
  ``paddle_train_throughput.py`` (vs a PaddleSlim ``run_glue_ofa.py``-style loop),
  ``mindspore_train_throughput.py`` (vs a MindSpore model-zoo TinyBERT-style loop);
* ONNX Runtime latency of every width of a DynaBERT run, fp32 and INT8 (``zoo bench``);
* cross-backend parity of that run's checkpoint at every width (``parity.py``).

Then it writes ``benchmarks/results/<date>.md``: the machine, its load average, package
versions, the peak table, a throughput table per backend (samples/s, real and padded
tokens/s, GFLOP/s and % of the fp32 peak for every contender), each command and its
output, and a verdict table against the targets (throughput >= 2.5x the padded reference
loops and >= 1.3x dynamically padded Hugging Face, torch fine-tune >= 1.2x the
length-grouped HF loop in real tokens/s and at >= 50% of the fp32 peak, width-0.5 latency
<= 0.6x width 1, parity <= 1e-4), saying plainly what falls short and by how much.  The
README's table between the ``benchmarks:start``/``benchmarks:end`` markers is replaced
by the verdicts.  A full run takes about 15-25 minutes on 2 CPU cores; ``--quick``
times fewer steps.  Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ZOO = str(Path(sys.executable).parent / "zoo")
COMPONENTS = ("peak", "torch", "paddle", "mindspore", "latency", "parity")
#: torch fine-tune's targets against the hardware and the length-grouped HF loop (issue #20)
PEAK_SHARE_TARGET = 0.5
GROUPED_TARGET = 1.2
#: the name of the matmul peak's outcome
PEAK = "matmul peak"
README_START, README_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


@dataclass
class Outcome:
    """What one benchmark command gave: its command, wall time, JSON report or failure."""

    name: str
    command: list[str]
    seconds: float = 0.0
    report: dict[str, Any] | list[Any] | None = None
    failure: str | None = None
    output: str = ""
    verdicts: list[tuple[str, str, str, bool | None]] = field(default_factory=list)


def run(name: str, command: list[str], json_path: Path, timeout: float) -> Outcome:
    """Run one benchmark command; read the JSON it wrote."""
    print(f"\n=== {name}: {shlex.join(command)}", flush=True)
    outcome = Outcome(name, command)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        outcome.failure = f"timed out after {timeout:.0f} s"
        return outcome
    outcome.seconds = time.perf_counter() - start
    outcome.output = done.stdout
    print(done.stdout[-3000:], flush=True)
    if done.returncode not in (0, 1) or not json_path.is_file():  # parity exits 1 when out of bound
        lines = (done.stderr or done.stdout).strip().splitlines()
        outcome.failure = lines[-1] if lines else f"exit code {done.returncode}"
        return outcome
    outcome.report = json.loads(json_path.read_text())
    return outcome


def throughput_verdicts(outcome: Outcome) -> None:
    """One verdict per samples/s ratio a throughput script reports against its target.

    Ratios in real tokens/s (the length-grouped HF loop) get their own row,
    :func:`grouped_verdict`.
    """
    assert isinstance(outcome.report, dict)
    for name, target in outcome.report.get("targets", {}).items():
        if target.get("metric", "samples/s") != "samples/s":
            continue
        ratio = outcome.report["ratios"][name]
        outcome.verdicts.append(
            (f"{outcome.name}: {name}", f"{ratio:.2f}x", f">= {target['min']}x", target["pass"])
        )


def results_of(outcome: Outcome) -> list[dict[str, Any]]:
    """The contenders a throughput script reported (empty when it did not run)."""
    return list(outcome.report.get("results", [])) if isinstance(outcome.report, dict) else []


def grouped_verdict(outcome: Outcome) -> None:
    """torch fine-tune against the fastest length-grouped HF loop, in real tokens/s."""
    results = {r["name"]: r for r in results_of(outcome)}
    grouped = [r for name, r in results.items() if name.startswith("HF grouped")]
    zoo = results.get("zoo torch")
    if zoo is None or not grouped:
        return
    best = max(grouped, key=lambda r: r["tokens_per_s"])
    ratio = zoo["tokens_per_s"] / best["tokens_per_s"]
    outcome.verdicts.append(
        (
            f"torch fine-tune vs length-grouped HF, real tokens/s "
            f"({zoo['tokens_per_s']:.0f} vs {best['tokens_per_s']:.0f}, {best['name']})",
            f"{ratio:.2f}x",
            f">= {GROUPED_TARGET}x",
            ratio >= GROUPED_TARGET,
        )
    )


def peak_verdict(outcome: Outcome, peaks: dict[str, float]) -> None:
    """torch fine-tune's GFLOP/s as a share of the measured fp32 matmul peak."""
    zoo = next((r for r in results_of(outcome) if r["name"] == "zoo torch"), None)
    peak = peaks.get("fp32")
    if zoo is None or not peak or zoo.get("gflops_per_s") is None:
        return
    share = zoo["gflops_per_s"] / peak
    outcome.verdicts.append(
        (
            f"torch fine-tune, share of the fp32 matmul peak ({zoo['gflops_per_s']:.1f} of "
            f"{peak:.1f} GFLOP/s; what bounds it: benchmarks/profile_step.py)",
            f"{math.floor(share * 1000) / 10:.1f}%",  # truncated: 49.97% must not read as 50%
            f">= {PEAK_SHARE_TARGET:.0%}",
            share >= PEAK_SHARE_TARGET,
        )
    )


def peak_table(outcome: Outcome) -> list[str]:
    """The Markdown table of the matmul peak run: each dtype and shape's best sustained GFLOP/s."""
    if not isinstance(outcome.report, dict):
        return []
    env = outcome.report.get("environment", {})
    lines = [
        f"torch GEMM, {env.get('threads', '?')} threads; bf16: {env.get('bf16', '?')}.",
        "",
        "| dtype | shape (M x K x N) | best GFLOP/s | median GFLOP/s |",
        "|---|---|---|---|",
    ]
    for row in outcome.report.get("rows", []):
        lines.append(
            f"| {row['dtype']} | {row['shape']} | {row['best_gflops']:.1f} | {row['median_gflops']:.1f} |"
        )
    for dtype, peak in outcome.report.get("peaks", {}).items():
        lines.append(f"| **{dtype} peak** | best of the shapes | **{peak:.1f}** | |")
    return lines


def throughput_table(outcome: Outcome, peaks: dict[str, float]) -> list[str]:
    """Every contender of a throughput script: samples/s, real and padded tokens/s, GFLOP/s, % of peak."""
    results = results_of(outcome)
    if not results:
        return []
    peak = peaks.get("fp32")
    lines = [
        "| contender | samples/s | real tokens/s | padded tokens/s | padding | GFLOP/s | % fp32 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        share = f"{r['gflops_per_s'] / peak:.0%}" if peak and r.get("gflops_per_s") is not None else "—"
        cells = [_shown(r, key, fmt) for key, fmt in THROUGHPUT_COLUMNS]
        lines.append(f"| {r['name']} | {' | '.join(cells)} | {share} |")
    return lines


#: the throughput table's columns after the contender: a result's key and its format
THROUGHPUT_COLUMNS = (
    ("samples_per_s", ".1f"),
    ("tokens_per_s", ".0f"),
    ("padded_tokens_per_s", ".0f"),
    ("padding_share", ".0%"),
    ("gflops_per_s", ".1f"),
)


def _shown(result: dict[str, Any], key: str, fmt: str) -> str:
    """``result[key]`` formatted, or a dash when the script did not report it."""
    value = result.get(key)
    return "—" if value is None else format(value, fmt)


def peaks_of(outcomes: list[Outcome]) -> dict[str, float]:
    """The measured matmul peaks by dtype (empty when the peak was not measured)."""
    for outcome in outcomes:
        if outcome.name == PEAK and isinstance(outcome.report, dict):
            return {k: float(v) for k, v in outcome.report.get("peaks", {}).items()}
    return {}


#: INT8 latency targets (issue #24), relative to the fp32 ONNX at width 1
INT8_TARGETS = {1.0: 0.45, 0.5: 0.25}


def latency_verdicts(outcome: Outcome) -> None:
    """Each width's median ONNX latency, fp32 and INT8 (with its dev metric), relative to fp32 at width 1."""
    assert isinstance(outcome.report, dict)
    rows = {r["width"]: r for r in outcome.report["rows"] if r["runtime"] == "onnxruntime"}
    int8 = {r["width"]: r for r in outcome.report["rows"] if r["runtime"] == "onnxruntime-int8"}
    base = rows[1.0]["median_ms"]
    for width in sorted(rows, reverse=True):
        ratio = rows[width]["median_ms"] / base
        target = "<= 0.6x" if width == 0.5 else ""
        passed = ratio <= 0.6 if width == 0.5 else None
        outcome.verdicts.append(
            (f"latency: width {width:g} ({rows[width]['median_ms']:.1f} ms)", f"{ratio:.2f}x", target, passed)
        )
    for width in sorted(int8, reverse=True):
        row, limit = int8[width], INT8_TARGETS.get(width)
        ratio = row["median_ms"] / base
        metric = f", dev {row['metric']:.4f}" if row.get("metric") is not None else ""
        outcome.verdicts.append(
            (
                f"latency: INT8 width {width:g} ({row['median_ms']:.1f} ms{metric})",
                f"{ratio:.2f}x",
                f"<= {limit}x" if limit else "",
                ratio <= limit if limit else None,
            )
        )


def parity_verdicts(outcome: Outcome) -> None:
    """The worst logit difference of each backend pair across widths."""
    assert isinstance(outcome.report, list)
    worst: dict[str, float] = {}
    for row in outcome.report:
        pair = f"{row['first']} vs {row['second']}"
        worst[pair] = max(worst.get(pair, 0.0), row["max_abs_diff"])
    for pair, diff in worst.items():
        outcome.verdicts.append((f"parity: {pair} (every width)", f"{diff:.1e}", "<= 1e-4", diff <= 1e-4))


def versions() -> str:
    """The installed versions of what the numbers depend on."""
    names = ("torch", "transformers", "paddlepaddle", "paddlenlp", "paddleslim", "mindspore", "onnxruntime")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (else platform's)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"model name\s*:\s*(.+)", text)
    return match.group(1).strip() if match else platform.machine()


def verdict_table(outcomes: list[Outcome]) -> list[str]:
    """The Markdown verdict table: measured value, target, and how far off a shortfall is."""
    lines = ["| what | measured | target | verdict |", "|---|---|---|---|"]
    for outcome in outcomes:
        if outcome.failure:
            lines.append(f"| {outcome.name} | — | — | **did not run**: {outcome.failure} |")
        for what, value, target, passed in outcome.verdicts:
            verdict = "" if passed is None else ("met" if passed else "**short**")
            lines.append(f"| {what} | {value} | {target} | {verdict} |")
    return lines


def load_average() -> str:
    """The 1/5/15-minute load averages (``?`` where the OS has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def write_markdown(
    outcomes: list[Outcome], path: Path, started: datetime.datetime, argv: list[str], load: str
) -> str:
    """The results file; returns the verdict table for the README."""
    table = "\n".join(verdict_table(outcomes))
    peaks = peaks_of(outcomes)
    lines = [
        f"# Benchmarks — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_name()}, {_cores()} cores, Python {platform.python_version()}; {versions()}.",
        f"Load average (1/5/15 min) at the start: {load}; at the end: {load_average()}.",
        f"Command: `{shlex.join([Path(PYTHON).name, *argv])}` (from the repository root).",
        "",
        "## Verdicts",
        "",
        table,
        "",
    ]
    for outcome in outcomes:
        lines += [f"## {outcome.name}", "", f"`{shlex.join(outcome.command)}` — {outcome.seconds:.0f} s", ""]
        extra = peak_table(outcome) if outcome.name == PEAK else throughput_table(outcome, peaks)
        if extra:
            lines += [*extra, ""]
        if outcome.failure:
            lines += [f"Did not run: {outcome.failure}", ""]
        else:
            lines += ["```", outcome.output.strip()[-4000:], "```", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return table


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def update_readme(table: str, results: Path) -> None:
    """Replace the README's benchmark table (between the markers) with ``table``."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    note = f"\nLatest: `{results.relative_to(ROOT)}` (`python benchmarks/run.py`).\n\n"
    readme.write_text(head + README_START + note + table + "\n" + README_END + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks and write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(COMPONENTS))
    parser.add_argument("--quick", action="store_true", help="fewer timed steps and repeats")
    parser.add_argument("--run", type=Path, default=Path("runs/dynabert_sst2"), help="the DynaBERT run")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    chosen = [c for c in args.only.split(",") if c]
    unknown = [c for c in chosen if c not in COMPONENTS]
    if unknown:
        parser.error(f"unknown component {unknown[0]!r}; expected some of {', '.join(COMPONENTS)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    load = load_average()
    steps = ["--steps", "20"] if args.quick else []
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if "peak" in chosen:  # first, once: every training figure is read against it
            seconds = ["--seconds", "1"] if args.quick else []
            command = [PYTHON, "benchmarks/matmul_peak.py", *seconds, "--json", str(out / "peak.json")]
            outcomes.append(run(PEAK, command, out / "peak.json", timeout=600))
        scripts = {
            "torch": ("torch training throughput", "train_throughput.py"),
            "paddle": ("paddle training throughput", "paddle_train_throughput.py"),
            "mindspore": ("mindspore training throughput", "mindspore_train_throughput.py"),
        }
        for component, (name, script) in scripts.items():
            if component in chosen:
                command = [PYTHON, f"benchmarks/{script}", *steps, "--json", str(out / f"{component}.json")]
                outcome = run(name, command, out / f"{component}.json", timeout=1800)
                if outcome.report is not None:
                    throughput_verdicts(outcome)
                    if component == "torch":
                        grouped_verdict(outcome)
                        peak_verdict(outcome, peaks_of(outcomes))
                outcomes.append(outcome)
        widths = "1,0.8333,0.6667,0.5"
        if "latency" in chosen:
            repeats = "20" if args.quick else "50"
            command = [
                ZOO,
                "bench",
                str(args.run),
                "--widths",
                widths,
                "--runtimes",
                "onnx,onnx-int8",
                "--batch-sizes",
                "32",
            ]
            command += [
                "--seq-lens",
                "64",
                "--warmup",
                "5",
                "--repeats",
                repeats,
                "--json",
                str(out / "bench.json"),
            ]
            outcome = run("ONNX latency by width", command, out / "bench.json", timeout=1800)
            if outcome.report is not None:
                latency_verdicts(outcome)
            outcomes.append(outcome)
        if "parity" in chosen:
            command = [PYTHON, "benchmarks/parity.py", str(args.run), "--json", str(out / "parity.json")]
            outcome = run("cross-backend parity", command, out / "parity.json", timeout=1800)
            if outcome.report is not None:
                parity_verdicts(outcome)
            outcomes.append(outcome)
    path = args.output or ROOT / "benchmarks" / "results" / f"{started:%Y-%m-%d}.md"
    table = write_markdown(outcomes, path, started, ["benchmarks/run.py", *(argv or sys.argv[1:])], load)
    if not args.no_readme:
        update_readme(table, path.resolve())
    print(f"\n{table}\n\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
