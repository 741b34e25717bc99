"""Cross-backend parity of a real checkpoint: the same logits on torch, paddle and mindspore.

    .venv/bin/python benchmarks/parity.py [CHECKPOINT_OR_RUN] [--backends torch,paddle,mindspore]
        [--widths 1,0.8333,0.6667,0.5] [--batches 8] [--batch-size 32] [--json out.json]

The default checkpoint is ``runs/dynabert_sst2`` (the DynaBERT run: MiniLM-L6-H384 fine-tuned on
SST-2, reordered), at every width it trained; any finished run or portable checkpoint works.
Real SST-2 dev batches (the longest first, max_seq_length 64) are tokenised once; each
backend runs in its own process (``python -m zoo_core.parity worker``), slices the
checkpoint to each width and saves its logits; the table gives the largest absolute
difference of every pair of backends at every width.  The acceptance bound is 1e-4 (fp32).
Backends that are not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from zoo_core.checkpoint import open_model_dir
from zoo_core.parity import parity
from zoo_core.plugins import list_backends

BOUND = 1e-4


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", nargs="?", type=Path, default=Path("runs/dynabert_sst2"))
    parser.add_argument("--backends", default="torch,paddle,mindspore")
    parser.add_argument("--widths", default=None, help="default: the run's trained widths, else 1")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint / "best" if (args.checkpoint / "best").is_dir() else args.checkpoint
    if not (checkpoint / "config.json").is_file():
        print(f"error: {args.checkpoint}: no checkpoint (run `zoo run dynabert_sst2` first)")
        return 2
    meta = open_model_dir(checkpoint).meta
    widths = [float(w) for w in args.widths.split(",")] if args.widths else meta.get("width_mult_list", [1.0])
    installed = {b.spec.name for b in list_backends()}
    wanted = [b for b in args.backends.split(",") if b]
    backends = [b for b in wanted if b in installed]
    for missing in sorted(set(wanted) - installed):
        print(f"note: backend {missing} is not installed; skipped")
    with tempfile.TemporaryDirectory() as tmp:
        rows = parity(
            checkpoint,
            backends,
            widths,
            Path(tmp),
            batches=args.batches,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
        )
    print(f"\n# Cross-backend parity — {checkpoint}")
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"backends {', '.join(backends)}"
    )
    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"# {args.batches} SST-2 dev batches of {args.batch_size} "
        f"(longest first, max length {args.max_seq_length})"
    )
    print(f"{'width':>7} {'backends':<20} {'max |diff|':>11} {'logits':>7}  within {BOUND:g}")
    for row in rows:
        verdict = "yes" if row.max_abs_diff <= BOUND else "NO"
        print(
            f"{row.width:>7g} {row.first + ' vs ' + row.second:<20} {row.max_abs_diff:>11.2e} "
            f"{row.logits:>7}  {verdict}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0 if all(r.max_abs_diff <= BOUND for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
