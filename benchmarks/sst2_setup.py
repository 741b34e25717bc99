"""What the per-framework training-throughput scripts share: arguments, model and batches.

``paddle_train_throughput.py`` and ``mindspore_train_throughput.py`` time zoo's trainer
against a reference-style loop on the same real SST-2 examples and MiniLM-L6-H384
weights; this module builds those once, the same way for both (no framework imported).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_core.backend import Backend, Batch
from zoo_core.data import collate, load_dataset, train_batches
from zoo_core.data.dataset import default_cache_dir
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.flops import training_flops
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.models.weights import Weights
from zoo_core.plugins import create_backend
from zoo_core.tasks import get_task

BATCH_SIZE = 32


def parse_args(doc: str | None) -> argparse.Namespace:
    """``--steps``, ``--warmup``, ``--threads``, ``--max-seq-length``, ``--json``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args()


@dataclass
class Workload:
    """The model (config and weights with a fresh classifier) and the batches both loops train on."""

    config: BertConfig
    weights: Weights
    batches: list[Batch]
    warmup: int

    @property
    def timed(self) -> list[Batch]:
        """The batches after the warm-up ones."""
        return self.batches[self.warmup :]

    @property
    def samples(self) -> int:
        """Examples in the timed batches."""
        return sum(len(b) for b in self.timed)

    def zoo_model(self, backend_name: str, threads: int) -> tuple[Backend, Any]:
        """Backend ``backend_name`` on the CPU with ``threads`` threads, and the model loaded in it."""
        backend = create_backend(backend_name, "cpu", {"threads": threads})
        model = backend.build_model(self.config)
        backend.load_weights(model, self.weights)
        return backend, model


def own_length(batch: Batch) -> int:
    """The length a batch is padded to as zoo collates it: its longest sequence."""
    return int(batch.input_ids.shape[1])


def rates(
    name: str,
    batches: Sequence[Batch],
    seconds: float,
    config: BertConfig,
    length: Callable[[Batch], int] = own_length,
) -> dict[str, Any]:
    """A contender's figures over timed ``batches`` that took ``seconds``, each padded to ``length(batch)``.

    samples/s, real (non-padding) tokens/s, padded tokens/s (batch x padded length: every
    position computed) and model GFLOP/s (:func:`zoo_core.flops.training_flops` of those
    shapes: matmuls, forward + backward).
    """
    samples = sum(len(b) for b in batches)
    real = sum(b.num_tokens for b in batches)
    padded = sum(len(b) * length(b) for b in batches)
    flops = sum(training_flops(config, len(b), length(b)) for b in batches)
    return {
        "name": name,
        "samples_per_s": samples / seconds,
        "tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "gflops_per_s": flops / seconds / 1e9,
        "mean_padded_length": padded / samples,
        "padding_share": 1 - real / padded,
        "seconds": seconds,
        "flops": flops,
    }


def rates_line(result: dict[str, Any]) -> str:
    """``samples/s, real tokens/s, padded tokens/s, GFLOP/s`` of a :func:`rates` result, on one line."""
    return (
        f"{result['samples_per_s']:6.1f} samples/s  {result['tokens_per_s']:7.0f} real tok/s  "
        f"{result['padded_tokens_per_s']:7.0f} padded tok/s ({result['padding_share']:.0%} padding)  "
        f"{result['gflops_per_s']:6.1f} GFLOP/s"
    )


def sst2_workload(args: argparse.Namespace) -> Workload:
    """minilm-l6-h384 with a seed-42 classifier, and zoo's first SST-2 training batches (seed 42, epoch 0)."""
    task = get_task("sst2")
    source = resolve_model("minilm-l6-h384")
    config, weights, _ = with_head(source, task.labels, task.is_regression, seed=42)
    tokenizer = WordPieceTokenizer(source.vocab_path, lowercase=source.lowercase)
    data = load_dataset(task, "data/glue/SST-2", "train", tokenizer, args.max_seq_length, default_cache_dir())
    order = train_batches(data.lengths, BATCH_SIZE, seed=42, epoch=0)[: args.warmup + args.steps]
    return Workload(config, weights, [collate(data, indices) for indices in order], args.warmup)
