"""Training samples/s of the torch backend in fp32, bf16 and fp16, side by side, on real SST-2.

    .venv/bin/python benchmarks/precision_throughput.py [--steps 20] [--rounds 2] [--threads 2] [--out F]

For each trainer (fine-tune, TinyBERT prediction stage, DynaBERT at widths 1/0.75/0.5/0.25)
every precision gets a fresh trainer on the real MiniLM-L6-H384 weights (``minilm-l6-h384``,
teacher = the same weights), warmed up for 3 steps, then the precisions are timed in
repeated blocks (fp32 bf16 fp16 fp32 bf16 fp16 ...; ``--rounds``) over the same zoo
length-bucketed SST-2 batches (batch 32, max_seq_length 64; spread evenly over epoch 0,
so their lengths are the epoch's), so drift on a shared machine
shows up as a spread between rounds instead of a bias.  Each block is ``--steps`` training
steps through :func:`zoo_core.trainers.train_step` (fp16 with the dynamic loss scale).
Prints one line per trainer and precision: samples/s per round, the best round, and the
ratio to fp32's best.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo_core.backend import DistillSpec, TrainSpec, WidthSpec
from zoo_core.data import WordPieceTokenizer, collate, load_dataset, train_batches
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.plugins import create_backend
from zoo_core.precision import LossScaleSpec
from zoo_core.tasks import get_task
from zoo_core.trainers import Training

REPO_ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16", "fp16")
LR = 2e-5


def train_spec(precision: str) -> TrainSpec:
    """The fine-tuning spec of ``precision`` (fp16: the dynamic loss scale)."""
    spec = TrainSpec("classification", precision=precision)  # type: ignore[arg-type]
    return replace(spec, loss_scale=LossScaleSpec()) if precision == "fp16" else spec


def make(kind: str, precision: str, backend: Any, config: Any, weights: Any) -> Training:
    """A fresh trainer of ``kind`` in ``precision`` on the real weights."""
    student = backend.build_model(config)
    backend.load_weights(student, weights)
    spec = train_spec(precision)
    if kind == "finetune":
        return Training.of(backend.make_trainer(student, spec), spec, needs_labels=True)
    teacher = backend.build_model(config)
    backend.load_weights(teacher, weights)
    if kind == "tinybert":
        distill = DistillSpec(
            stage="prediction", train=spec, layer_map=tuple(range(1, 7)), loss_weights={"logits": 1.0}
        )
        return Training.of(backend.make_distill_trainer(student, teacher, distill), spec)
    width = WidthSpec(train=spec, widths=(1.0, 0.75, 0.5, 0.25))
    return Training.of(backend.make_width_trainer(student, teacher, width), spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per precision, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="finetune,tinybert,dynabert")
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help="fp16 is emulated (slow) on CPUs without AVX512-FP16",
    )
    parser.add_argument("--compile", action="store_true", help="the torch backend's compile option")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precisions = ["fp32", *(p for p in args.precisions.split(",") if p != "fp32")]

    source = resolve_model("minilm-l6-h384")
    config, weights, _ = with_head(source, labels=("0", "1"), regression=False, seed=42)
    tokenizer = WordPieceTokenizer(source.vocab_path, lowercase=source.lowercase)
    dataset = load_dataset(
        get_task("sst2"), REPO_ROOT / "data/glue/SST-2", "train", tokenizer, 64, cache_dir=None
    )
    order = train_batches(dataset.lengths, 32, seed=42, epoch=0)
    spread = order[:: max(1, len(order) // (3 + args.steps))][: 3 + args.steps]  # lengths as in an epoch
    batches = [replace(collate(dataset, idx), step=i) for i, idx in enumerate(spread)]
    warmup, timed = batches[:3], batches[3:]
    backend = create_backend("torch", "cpu", {"threads": args.threads, "compile": args.compile})

    results: dict[str, dict[str, list[float]]] = {}
    for kind in args.kinds.split(","):
        trainers = {p: make(kind, p, backend, config, weights) for p in precisions}
        for trainer in trainers.values():
            for batch in warmup:
                trainer.step(batch, LR)
        rates: dict[str, list[float]] = {p: [] for p in precisions}
        for _ in range(args.rounds):
            for p, trainer in trainers.items():
                start = time.perf_counter()
                skipped = sum(bool(trainer.step(batch, LR).get("skipped")) for batch in timed)
                seconds = time.perf_counter() - start
                rates[p].append(sum(len(b) for b in timed) / seconds)
                if skipped:
                    print(f"  ({kind} {p}: {skipped} overflowed steps skipped)")
        results[kind] = rates
        best32 = max(rates["fp32"])
        for p in precisions:
            rounds = " ".join(f"{r:6.1f}" for r in rates[p])
            best = max(rates[p])
            print(f"{kind:9s} {p}: {rounds}  best {best:6.1f} samples/s  {best / best32:.2f}x fp32")
    if args.out:
        record = {
            "date": datetime.date.today().isoformat(),
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": args.threads,
            "steps": args.steps,
            "mean_tokens": float(np.mean([b.num_tokens / len(b) for b in timed])),
            "samples_per_s": results,
        }
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
