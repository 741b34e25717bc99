"""Own data at scale: a 1,000,000-row CSV read, tokenised and trained on, with its peak memory.

    .venv/bin/python benchmarks/own_data_scale.py [--rows 1000000] [--steps 30] [--out DIR]

Writes a CSV of ``rows`` real TREC questions (drawn with replacement from
``data/trec/train.jsonl``, each given a row number so no two rows are equal, every text
field quoted and holding a comma), then runs ``zoo run`` on it in a child process: a small
random-initialised model (``bert-l2-h128``), ``steps`` training steps, a 1% dev split, no
cache of its own (a fresh folder, so the child tokenises every row).  It reports the child's peak
resident memory and the time of each phase from the run's log, against the memory of
the same run on 10,000 rows: the difference is what the 990,000 extra rows cost.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` TREC questions as a quoted CSV (text with a comma, label)."""
    source = [json.loads(line) for line in (REPO / "data/trec/train.jsonl").read_text().splitlines()]
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["question", "label"])
        for i in range(rows):
            row = rng.choice(source)
            writer.writerow([f"{row['text']}, asked {i}", row["label"]])


def run(csv_path: Path, steps: int, out: Path) -> tuple[float, float, str]:
    """``zoo run`` on ``csv_path`` in a child process: (peak RSS MiB, wall seconds, its output)."""
    recipe = {
        "kind": "finetune",
        "name": csv_path.stem,
        "task": {"name": "trec6", "text": "question", "label": "label"},
        "model": "bert-l2-h128",
        "data": {
            "train": str(csv_path),
            "dev_split": 0.01,
            "max_seq_length": 64,
            "cache_dir": str(out / "cache"),
        },
        "train": {"max_steps": steps, "batch_size": 32, "learning_rate": 1e-4, "logging_steps": 10},
        "eval": {"every_epoch": False, "batch_size": 256},
        "output_dir": str(out / csv_path.stem),
    }
    recipe_path = out / f"{csv_path.stem}.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    code = (
        "import resource, sys; from zoo_core.cli.main import main; sys.argv = ['zoo', 'run', sys.argv[1]]; "
        "code = 0\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code or 0\n"
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(recipe_path)], capture_output=True, text=True, cwd=REPO, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"zoo run failed:\n{done.stdout}\n{done.stderr}")
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_KB"))
    return peak / 1024, wall, done.stdout


def main() -> None:
    """Measure 10,000 rows and ``--rows`` rows; print (and optionally save) the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for rows in (10_000, args.rows):
            path = out / f"trec-{rows}.csv"
            t0 = time.perf_counter()
            write_csv(path, rows)
            written = time.perf_counter() - t0
            peak, wall, stdout = run(path, args.steps, out)
            size = path.stat().st_size / 2**20
            shown = [
                line for line in stdout.splitlines() if "training examples" in line or line.startswith("dev ")
            ]
            lines.append(
                f"{rows:>9,} rows ({size:6.1f} MiB CSV, written in {written:.0f}s): zoo run {wall:6.1f}s, "
                f"peak RSS {peak:7.1f} MiB; {' | '.join(shown)}"
            )
            print(lines[-1], flush=True)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this script itself peaked at {self_peak:.0f} MiB: it writes the CSV row by row)")


if __name__ == "__main__":
    main()
