"""Cross-backend parity: one portable checkpoint, the same logits on every backend.

The parent process (no framework imported) tokenises real batches of the checkpoint's
task into an ``.npz``; each backend then runs in a subprocess of its own (paddle and
mindspore cannot share a process) that loads the checkpoint, slices it to each width
(:func:`zoo_core.models.width.slice_to_width`, so narrow heads are exercised too), and
saves its logits; the parent compares the saved arrays pairwise.

    python -m zoo_core.parity worker --backend paddle --checkpoint DIR --batches B.npz \\
        --widths 1,0.5 --out paddle.npz

is the worker's command line; :func:`parity` runs the whole comparison.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo_core.backend import Batch
from zoo_core.checkpoint import open_model_dir
from zoo_core.data.batching import collate, eval_batches
from zoo_core.data.dataset import default_cache_dir
from zoo_core.data.splits import load_split
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import ZooError
from zoo_core.runners.inference import checkpoint_task, recorded_data

FIELDS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass(frozen=True)
class ParityRow:
    """The largest absolute logit difference between two backends at one width."""

    width: float
    first: str
    second: str
    max_abs_diff: float
    logits: int


def save_batches(
    checkpoint: Path,
    out: Path,
    *,
    data_dir: Path | None = None,
    split: str = "dev",
    batches: int = 4,
    batch_size: int = 32,
    max_seq_length: int = 64,
) -> int:
    """Tokenise the first ``batches`` length-sorted batches of ``split`` into ``out``; return the count.

    Batches come longest first (:func:`eval_batches`), so they include the most padding
    differences and the longest sequences of the split.
    """
    model_dir = open_model_dir(checkpoint)
    task = checkpoint_task(model_dir, None)
    tokenizer = WordPieceTokenizer(model_dir.vocab_path, lowercase=model_dir.lowercase)
    data = recorded_data(model_dir, task, data_dir)
    dataset = load_split(task, data, split, tokenizer, max_seq_length, default_cache_dir())
    chosen = eval_batches(dataset.lengths, batch_size)[:batches]
    arrays = {}
    for i, indices in enumerate(chosen):
        batch = collate(dataset, indices)
        for name in FIELDS:
            arrays[f"{name}_{i}"] = getattr(batch, name)
    np.savez(out, **arrays)
    return len(chosen)


def load_batches(path: Path) -> list[Batch]:
    """The batches :func:`save_batches` wrote."""
    with np.load(path) as saved:
        count = len([k for k in saved.files if k.startswith("input_ids_")])
        return [Batch(**{name: saved[f"{name}_{i}"] for name in FIELDS}) for i in range(count)]


def backend_logits(
    backend_name: str, checkpoint: Path, batches: Path, widths: Sequence[float], out: Path
) -> None:
    """Run in a worker: the logits of every batch at every width on ``backend_name``, saved to ``out``."""
    from zoo_core.models.width import slice_to_width
    from zoo_core.plugins import create_backend

    model_dir = open_model_dir(checkpoint)
    weights = model_dir.load_weights()
    backend = create_backend(backend_name, "cpu", {})
    data = load_batches(batches)
    results = {}
    for width in widths:
        config, sliced = slice_to_width(weights, model_dir.config, width)
        model = backend.build_model(config)
        backend.load_weights(model, sliced)
        for i, batch in enumerate(data):
            results[f"{width:g}_{i}"] = np.asarray(backend.predict(model, batch), dtype=np.float32)
    np.savez(out, **results)


def run_worker(
    backend_name: str,
    checkpoint: Path,
    batches: Path,
    widths: Sequence[float],
    out: Path,
    timeout: float = 1800,
) -> Path:
    """Run :func:`backend_logits` in a fresh Python process; raise with its last error line on failure."""
    command = [
        sys.executable,
        "-m",
        "zoo_core.parity",
        "worker",
        "--backend",
        backend_name,
        "--checkpoint",
        str(checkpoint),
        "--batches",
        str(batches),
        "--widths",
        ",".join(f"{w:g}" for w in widths),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ZooError(f"the {backend_name} parity worker failed: {lines[-1] if lines else done.returncode}")
    return out


def compare(saved: dict[str, Path], widths: Sequence[float]) -> list[ParityRow]:
    """Max |difference| of the logits of every pair of backends at every width."""
    arrays = {name: dict(np.load(path)) for name, path in saved.items()}
    rows = []
    for width in widths:
        prefix = f"{width:g}_"
        for first, second in itertools.combinations(saved, 2):
            a, b = arrays[first], arrays[second]
            keys = sorted(k for k in a if k.startswith(prefix))
            diff = max(float(np.abs(a[k] - b[k]).max()) for k in keys)
            rows.append(ParityRow(width, first, second, diff, sum(a[k].size for k in keys)))
    return rows


def parity(
    checkpoint: Path,
    backends: Sequence[str],
    widths: Sequence[float],
    workdir: Path,
    **batch_options: int,
) -> list[ParityRow]:
    """Tokenise real batches, run every backend in its own process, compare their logits."""
    workdir.mkdir(parents=True, exist_ok=True)
    batches = workdir / "batches.npz"
    save_batches(checkpoint, batches, **batch_options)  # type: ignore[arg-type]
    saved = {
        name: run_worker(name, checkpoint, batches, widths, workdir / f"{name}.npz") for name in backends
    }
    return compare(saved, widths)


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo_core.parity worker ...``: the per-backend worker."""
    parser = argparse.ArgumentParser(prog="python -m zoo_core.parity")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="save one backend's logits")
    worker.add_argument("--backend", required=True)
    worker.add_argument("--checkpoint", type=Path, required=True)
    worker.add_argument("--batches", type=Path, required=True)
    worker.add_argument("--widths", default="1")
    worker.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    widths = [float(w) for w in args.widths.split(",")]
    backend_logits(args.backend, args.checkpoint, args.batches, widths, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
