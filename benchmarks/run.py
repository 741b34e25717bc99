"""Every benchmark zoo promises, side by side in one invocation, written up as Markdown.

    .venv/bin/python benchmarks/run.py [--quick] [--only torch,paddle,mindspore,latency,parity]
        [--run runs/dynabert_sst2] [--output benchmarks/results/DATE.md] [--no-readme]

Runs, one after the other, each in a process of its own (frameworks cannot all share one):

* training throughput of each backend against its reference-style loop:
  ``train_throughput.py`` (torch vs Hugging Face, padded and dynamically padded),
  ``paddle_train_throughput.py`` (vs a PaddleSlim ``run_glue_ofa.py``-style loop),
  ``mindspore_train_throughput.py`` (vs a MindSpore model-zoo TinyBERT-style loop);
* ONNX Runtime latency of every width of a DynaBERT run, fp32 and INT8 (``zoo bench``);
* cross-backend parity of that run's checkpoint at every width (``parity.py``).

Then it writes ``benchmarks/results/<date>.md``: the machine, package versions, each
command, its numbers, and a verdict table against the targets (throughput >= 2.5x the
padded reference loops and >= 1.3x dynamically padded Hugging Face, width-0.5 latency
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
COMPONENTS = ("torch", "paddle", "mindspore", "latency", "parity")
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
    """One verdict per ratio a throughput script reports against its target."""
    assert isinstance(outcome.report, dict)
    for name, target in outcome.report.get("targets", {}).items():
        ratio = outcome.report["ratios"][name]
        outcome.verdicts.append(
            (f"{outcome.name}: {name}", f"{ratio:.2f}x", f">= {target['min']}x", target["pass"])
        )


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


def write_markdown(outcomes: list[Outcome], path: Path, started: datetime.datetime, argv: list[str]) -> str:
    """The results file; returns the verdict table for the README."""
    table = "\n".join(verdict_table(outcomes))
    lines = [
        f"# Benchmarks — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_name()}, {_cores()} cores, Python {platform.python_version()}; {versions()}.",
        f"Command: `{shlex.join([Path(PYTHON).name, *argv])}` (from the repository root).",
        "",
        "## Verdicts",
        "",
        table,
        "",
    ]
    for outcome in outcomes:
        lines += [f"## {outcome.name}", "", f"`{shlex.join(outcome.command)}` — {outcome.seconds:.0f} s", ""]
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
    steps = ["--steps", "20"] if args.quick else []
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
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
    table = write_markdown(outcomes, path, started, ["benchmarks/run.py", *(argv or sys.argv[1:])])
    if not args.no_readme:
        update_readme(table, path.resolve())
    print(f"\n{table}\n\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
