"""Training throughput of zoo's torch backend against plain Hugging Face loops, on real SST-2.

    .venv/bin/python benchmarks/train_throughput.py [--steps 60] [--warmup 5] [--threads 2] [--json out.json]

Four contenders train the real MiniLM-L6-H384 weights (``minilm-l6-h384``, with the same
freshly initialised classifier) on SST-2's train split, batch 32, max_seq_length 64, at a
constant learning rate, one after the other in this process:

* **zoo torch**: zoo's own pipeline.  Tokenised by zoo's WordPiece tokenizer
  (``zoo_core.data.load_dataset``), length-bucketed batches from
  ``zoo_core.data.train_batches`` (seed 42, epoch 0) collated with ``zoo_core.data.collate``,
  each step ``train_step(trainer, batch, lr)`` of the torch backend's trainer.
* **HF padded**: what the GLUE example / a typical user writes.  ``BertTokenizerFast`` with
  ``padding="max_length"``, ``BertForSequenceClassification`` (eager and sdpa attention), a shuffled
  ``DataLoader`` with ``default_data_collator``, ``model(**inputs, labels=labels).loss.backward()``,
  ``clip_grad_norm_(..., 1.0)``, ``torch.optim.AdamW`` with default settings, ``zero_grad()``.
* **HF dynamic**: the same loop with ``DataCollatorWithPadding``: every batch padded to its
  own longest sequence.
* **HF grouped**: what a careful HF user gets from ``TrainingArguments(group_by_length=True)``:
  the Trainer's ``LengthGroupedSampler`` (``transformers.trainer_pt_utils``; megabatches of
  50 batches sorted by length, the longest batch first) over the whole training split's
  lengths, the same batch size, ``DataCollatorWithPadding`` (each batch padded to its longest
  member), otherwise the same plain loop.  It times a seeded random draw of the batches of
  the sampler's first epoch (seeded generator; its first batches, the longest, are not
  typical): other examples than the rest, from the same distribution, so it is compared
  in real tokens/s.

The first three time exactly the same examples: those of zoo's batches ``warmup ..
warmup+steps`` of epoch 0.  zoo steps through them in its bucketed order; the padded and
dynamic HF loops see them through a shuffled ``DataLoader`` (fixed seed), as they would see
any random sample.  The warm-up steps (untimed) likewise use the examples of zoo's first
``warmup`` batches.  Timing covers batch assembly (collation) and the training step, not
tokenisation.  Samples/s is the number of timed examples over the wall time of the timed
steps; real tokens/s counts non-padding tokens, padded tokens/s every position computed
(batch x padded length); GFLOP/s is the model FLOPs of those shapes
(:func:`zoo_core.flops.training_flops`: matmuls, forward + backward = 3x forward) per
second.  The acceptance targets are zoo >= 2.5x HF padded and >= 1.3x HF dynamic in
samples/s, and >= 1.2x HF grouped in real tokens/s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import transformers
from torch.utils.data import BatchSampler, DataLoader
from transformers import BertTokenizerFast, DataCollatorWithPadding, default_data_collator
from transformers.trainer_pt_utils import LengthGroupedSampler

from zoo_core.backend import Batch, TrainSpec
from zoo_core.cpu_features import cpu_model
from zoo_core.data import (
    Examples,
    TokenizedDataset,
    WordPieceTokenizer,
    collate,
    load_dataset,
    read_split,
    train_batches,
)
from zoo_core.flops import training_flops
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import ModelSource, resolve_model, with_head
from zoo_core.models.weights import Weights
from zoo_core.plugins import create_backend
from zoo_core.tasks import get_task
from zoo_core.trainers import train_step

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "minilm-l6-h384"
TASK = "sst2"
LABELS = ("0", "1")
SEED = 42
LR = 2e-5
#: acceptance targets: zoo's samples/s over each HF contender's (HF grouped: real tokens/s)
TARGETS = {"HF padded": 2.5, "HF dynamic": 1.3, "HF grouped": 1.2}
#: contenders compared in real tokens/s: they train other examples than zoo's timed ones
BY_TOKENS = ("HF grouped",)
ZOO = "zoo torch"
#: HF attention implementations to measure ("sdpa" is transformers 4.48's default for BERT)
HF_ATTENTIONS = ("eager", "sdpa")

B = TypeVar("B")
HFBatch = dict[str, torch.Tensor]
Features = list[dict[str, Any]]


@dataclass
class Result:
    """The timed steps of one contender."""

    name: str
    steps: int
    samples: int
    seconds: float
    real_tokens: int
    padded_tokens: int
    mean_padded_length: float
    #: model FLOPs of the timed steps (zoo_core.flops, from each batch's shape)
    flops: int

    @classmethod
    def from_masks(cls, name: str, masks: Sequence[Any], seconds: float, config: BertConfig) -> Result:
        """The result of timed steps of ``config``'s model over batches with attention masks ``masks``."""
        arrays = [np.asarray(mask) for mask in masks]
        return cls(
            name=name,
            steps=len(arrays),
            samples=sum(int(a.shape[0]) for a in arrays),
            seconds=seconds,
            real_tokens=sum(int(a.sum()) for a in arrays),
            padded_tokens=sum(int(a.size) for a in arrays),
            mean_padded_length=float(np.mean([a.shape[1] for a in arrays])),
            flops=sum(training_flops(config, a.shape[0], a.shape[1]) for a in arrays),
        )

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def tokens_per_s(self) -> float:
        """Real (non-padding) tokens per second."""
        return self.real_tokens / self.seconds

    @property
    def padded_tokens_per_s(self) -> float:
        """Every position computed (batch x padded length) per second."""
        return self.padded_tokens / self.seconds

    @property
    def gflops_per_s(self) -> float:
        """Model GFLOP/s of the timed steps."""
        return self.flops / self.seconds / 1e9

    @property
    def ms_per_step(self) -> float:
        return 1e3 * self.seconds / self.steps

    @property
    def padding_share(self) -> float:
        return 1.0 - self.real_tokens / self.padded_tokens

    def to_dict(self) -> dict[str, Any]:
        """The fields and the derived rates, for JSON."""
        derived = (
            "samples_per_s",
            "tokens_per_s",
            "padded_tokens_per_s",
            "gflops_per_s",
            "ms_per_step",
            "padding_share",
        )
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


def measure(
    name: str,
    step: Callable[[B], None],
    warmup: Iterable[B],
    timed: Iterable[B],
    mask_of: Callable[[B], Any],
    config: BertConfig,
) -> Result:
    """Run ``step`` over ``warmup`` untimed, then over ``timed`` (batch assembly included) timed."""
    for batch in warmup:
        step(batch)
    masks = []
    start = time.perf_counter()
    for batch in timed:
        step(batch)
        masks.append(mask_of(batch))
    seconds = time.perf_counter() - start
    return Result.from_masks(name, masks, seconds, config)


# --------------------------------------------------------------------------- zoo


def zoo_trainer_step(config: BertConfig, weights: Weights) -> Callable[[Batch], None]:
    """One training step of zoo's torch backend on a fresh model loaded with ``weights``."""
    backend = create_backend("torch", "cpu")
    model = backend.build_model(config)
    backend.load_weights(model, weights)
    trainer = backend.make_trainer(model, TrainSpec("classification", seed=SEED))

    def step(batch: Batch) -> None:
        train_step(trainer, batch, LR)

    return step


def run_zoo(
    config: BertConfig,
    weights: Weights,
    dataset: TokenizedDataset,
    warmup: list[np.ndarray],
    timed: list[np.ndarray],
) -> Result:
    """zoo's loop: bucketed index batches, collated as they are consumed."""
    step = zoo_trainer_step(config, weights)
    return measure(
        ZOO,
        step,
        (collate(dataset, indices) for indices in warmup),
        (collate(dataset, indices) for indices in timed),
        lambda batch: batch.attention_mask,
        config,
    )


# --------------------------------------------------------------------------- Hugging Face


def build_hf_model(
    config: BertConfig, weights: Weights, attention: str = "eager"
) -> transformers.BertForSequenceClassification:
    """HF's ``BertForSequenceClassification`` with zoo's canonical ``weights`` (HF names)."""
    hf_config = transformers.BertConfig(**config.to_hf_dict(), attn_implementation=attention)
    model = transformers.BertForSequenceClassification(hf_config)
    state = {name: torch.tensor(np.asarray(value, dtype=np.float32)) for name, value in weights.items()}
    loaded = model.load_state_dict(state, strict=False)
    missing = [name for name in loaded.missing_keys if not name.endswith("position_ids")]
    if missing or loaded.unexpected_keys:
        raise SystemExit(
            f"HF model does not match zoo's weights: missing {missing}, unexpected {loaded.unexpected_keys}"
        )
    return model


def hf_features(
    tokenizer: BertTokenizerFast, examples: Examples, indices: np.ndarray, max_length: int, padded: bool
) -> Features:
    """Tokenised examples ``indices`` as the GLUE example's ``datasets.map`` would produce them."""
    if indices.size == 0:
        return []
    encoded = tokenizer(
        [examples.text_a[i] for i in indices],
        padding="max_length" if padded else False,
        max_length=max_length,
        truncation=True,
    )
    assert examples.labels is not None
    return [
        {**{key: values[row] for key, values in encoded.items()}, "label": int(examples.labels[i])}
        for row, i in enumerate(indices)
    ]


def hf_loader(features: Features, batch_size: int, collator: Callable[[Features], HFBatch]) -> DataLoader:
    """A shuffled ``DataLoader`` with a fixed seed, as a training script builds it."""
    generator = torch.Generator().manual_seed(SEED)
    return DataLoader(features, batch_size=batch_size, shuffle=True, collate_fn=collator, generator=generator)


def hf_train_step(model: transformers.BertForSequenceClassification) -> Callable[[HFBatch], None]:
    """The textbook HF + torch step: loss, backward, clip, AdamW (defaults), zero_grad."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)

    def step(batch: HFBatch) -> None:
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        model(**inputs, labels=batch["labels"]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


def run_hf(
    name: str,
    config: BertConfig,
    weights: Weights,
    features: tuple[Features, Features],
    batch_size: int,
    collator: Callable[[Features], HFBatch],
    attention: str,
) -> Result:
    """An HF loop over shuffled ``(warm-up, timed)`` features, collated by ``collator``."""
    torch.manual_seed(SEED)
    step = hf_train_step(build_hf_model(config, weights, attention))
    warmup, timed = features
    return measure(
        name,
        step,
        hf_loader(warmup, batch_size, collator),
        hf_loader(timed, batch_size, collator),
        lambda batch: batch["attention_mask"],
        config,
    )


def run_hf_grouped(
    name: str,
    config: BertConfig,
    weights: Weights,
    features: Features,
    batch_size: int,
    collator: Callable[[Features], HFBatch],
    attention: str,
    warmup: int,
    steps: int,
) -> Result:
    """HF's ``group_by_length=True`` loop: a ``LengthGroupedSampler`` over all ``features``.

    As ``Trainer._get_train_sampler`` builds it (lengths of the unpadded ``input_ids``),
    with a seeded generator, cut into batches as its ``DataLoader`` cuts them, each padded
    by ``collator`` to its longest member when it is trained on.  The sampler sorts every
    megabatch of 50 batches longest first (the longest megabatch first of all), so the
    epoch's first batches are not typical ones: ``warmup`` (untimed) and then ``steps``
    (timed) batches are drawn from the whole epoch's batches (seeded), as zoo's timed
    batches are a random draw of its shuffled epoch.
    """
    torch.manual_seed(SEED)
    step = hf_train_step(build_hf_model(config, weights, attention))
    lengths = [len(feature["input_ids"]) for feature in features]
    sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(SEED))
    epoch = list(BatchSampler(sampler, batch_size, drop_last=False))
    chosen = np.random.default_rng(SEED).choice(len(epoch), warmup + steps, replace=False)

    def batches(positions: np.ndarray) -> Iterator[HFBatch]:
        for position in positions:  # what the DataLoader does per batch: fetch, then collate
            yield collator([features[i] for i in epoch[position]])

    return measure(
        name,
        step,
        batches(chosen[:warmup]),
        batches(chosen[warmup:]),
        lambda batch: batch["attention_mask"],
        config,
    )


# --------------------------------------------------------------------------- checks


def tokenisation_mismatches(dataset: TokenizedDataset, features: Features, indices: np.ndarray) -> int:
    """How many of ``indices`` zoo's tokenizer and HF's (unpadded ``features``) encode differently."""
    return sum(
        not np.array_equal(dataset.ids[dataset.offsets[i] : dataset.offsets[i + 1]], feature["input_ids"])
        for i, feature in zip(indices, features, strict=True)
    )


def max_logit_difference(config: BertConfig, weights: Weights, batch: Batch) -> float:
    """Largest |zoo - HF| eval-mode logit on ``batch``: both sides hold the same model."""
    backend = create_backend("torch", "cpu")
    model = backend.build_model(config)
    backend.load_weights(model, weights)
    zoo_logits = backend.predict(model, batch)
    hf_model = build_hf_model(config, weights).eval()
    with torch.inference_mode():
        hf_logits = hf_model(
            input_ids=torch.from_numpy(batch.input_ids),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
        ).logits.numpy()
    return float(np.abs(zoo_logits - hf_logits).max())


# --------------------------------------------------------------------------- report


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how this measurement ran."""
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "model": MODEL,
        "data_dir": str(args.data_dir),
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "steps": args.steps,
        "warmup": args.warmup,
        "lr": LR,
        "hf_attention": args.hf_attention,
    }


def by_tokens(name: str) -> bool:
    """Whether contender ``name`` is compared in real tokens/s (else samples/s)."""
    return name.startswith(BY_TOKENS)


def ratios(results: list[Result]) -> dict[str, float]:
    """zoo's samples/s over each other contender's (real tokens/s for :data:`BY_TOKENS`)."""
    by_name = {result.name: result for result in results}
    zoo = by_name[ZOO]
    return {
        name: zoo.tokens_per_s / result.tokens_per_s
        if by_tokens(name)
        else zoo.samples_per_s / result.samples_per_s
        for name, result in by_name.items()
        if name != ZOO
    }


def format_table(results: list[Result]) -> str:
    """The results as a plain-text table."""
    header = (
        f"{'contender':<18} {'steps':>5} {'samples':>7} {'seconds':>8} {'samples/s':>10} "
        f"{'ms/step':>8} {'mean len':>8} {'padding':>7} {'real tok/s':>10} {'padded tok/s':>12} "
        f"{'GFLOP/s':>8}"
    )
    rows = [
        f"{r.name:<18} {r.steps:>5} {r.samples:>7} {r.seconds:>8.2f} {r.samples_per_s:>10.1f} "
        f"{r.ms_per_step:>8.1f} {r.mean_padded_length:>8.1f} {r.padding_share:>7.0%} {r.tokens_per_s:>10.0f} "
        f"{r.padded_tokens_per_s:>12.0f} {r.gflops_per_s:>8.1f}"
        for r in results
    ]
    return "\n".join([header, "-" * len(header), *rows])


def target_of(name: str) -> float:
    """The acceptance target for contender ``name`` ("HF padded (sdpa)" -> 2.5)."""
    return next(t for prefix, t in TARGETS.items() if name.startswith(prefix))


def format_verdicts(speedups: dict[str, float]) -> list[str]:
    """One line per HF contender: zoo's speed-up, the target and PASS/FAIL."""
    return [
        f"zoo / {name:<18} = {ratio:5.2f}x   target >= {target_of(name)}x   "
        f"{'PASS' if ratio >= target_of(name) else 'FAIL'}   ({metric_of(name)})"
        for name, ratio in speedups.items()
    ]


def metric_of(name: str) -> str:
    """What contender ``name``'s ratio compares."""
    return "real tokens/s" if by_tokens(name) else "samples/s"


def print_report(env: dict[str, Any], checks: dict[str, Any], results: list[Result]) -> dict[str, float]:
    """Print the environment, the sanity checks, the table and the verdicts; return the ratios."""
    print(f"command:  {env['command']}")
    print(f"date:     {env['date']}")
    print(f"cpu:      {env['cpu']}, {env['threads']} torch threads")
    print(f"versions: torch {env['torch']}, transformers {env['transformers']}, python {env['python']}")
    print(
        f"setup:    {env['model']} on {env['data_dir']}, batch {env['batch_size']}, "
        f"max_seq_length {env['max_seq_length']}, {env['warmup']} warm-up + {env['steps']} timed steps, "
        f"lr {env['lr']}, HF attention {', '.join(env['hf_attention'])}"
    )
    print(
        f"checks:   tokenisation differs on {checks['tokenisation_mismatches']} of "
        f"{checks['timed_examples']} timed examples; "
        f"zoo vs HF eval logits max |diff| {checks['max_logit_difference']:.2e}"
    )
    print()
    print(format_table(results))
    print()
    speedups = ratios(results)
    for line in format_verdicts(speedups):
        print(line)
    return speedups


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per contender first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data" / "glue" / "SST-2")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--hf-attention",
        default=",".join(HF_ATTENTIONS),
        type=lambda text: [part for part in text.split(",") if part],
        help="comma-separated HF attention implementations to measure (eager, sdpa)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.batch_size < 1:
        parser.error("--steps, --threads and --batch-size must be positive, --warmup non-negative")
    return args


def zoo_data(source: ModelSource, data_dir: Path, max_seq_length: int) -> tuple[Examples, TokenizedDataset]:
    """SST-2's raw train examples and zoo's tokenisation of them (not cached on disk)."""
    task = get_task(TASK)
    tokenizer = WordPieceTokenizer(source.vocab_path, lowercase=source.lowercase)
    dataset = load_dataset(task, data_dir, "train", tokenizer, max_seq_length, cache_dir=None)
    return read_split(task, data_dir, "train"), dataset


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    source = resolve_model(MODEL)
    config, weights, _ = with_head(source, labels=LABELS, regression=False, seed=SEED)
    examples, dataset = zoo_data(source, args.data_dir, args.max_seq_length)

    batches = train_batches(dataset.lengths, args.batch_size, seed=SEED, epoch=0)
    if args.warmup + args.steps > len(batches):
        raise SystemExit(f"--warmup + --steps exceeds the {len(batches)} batches of one epoch")
    warmup, timed = batches[: args.warmup], batches[args.warmup : args.warmup + args.steps]
    warmup_indices = np.concatenate(warmup) if warmup else np.zeros(0, np.int64)
    timed_indices = np.concatenate(timed)

    tokenizer = BertTokenizerFast.from_pretrained(
        str(source.vocab_path.parent), do_lower_case=source.lowercase
    )
    padded, dynamic = (
        (
            hf_features(tokenizer, examples, warmup_indices, args.max_seq_length, padded=pad),
            hf_features(tokenizer, examples, timed_indices, args.max_seq_length, padded=pad),
        )
        for pad in (True, False)
    )
    everything = hf_features(
        tokenizer, examples, np.arange(len(examples)), args.max_seq_length, padded=False
    )  # the whole split, for the length-grouped sampler
    checks = {
        "timed_examples": int(timed_indices.size),
        "tokenisation_mismatches": tokenisation_mismatches(dataset, dynamic[1], timed_indices),
        "max_logit_difference": max_logit_difference(config, weights, collate(dataset, timed[0])),
    }

    results = [run_zoo(config, weights, dataset, warmup, timed)]
    for attention in args.hf_attention:
        for name, features, collator in (
            ("HF padded", padded, default_data_collator),
            ("HF dynamic", dynamic, DataCollatorWithPadding(tokenizer)),
        ):
            label = f"{name} ({attention})"
            results.append(run_hf(label, config, weights, features, args.batch_size, collator, attention))
        results.append(
            run_hf_grouped(
                f"HF grouped ({attention})",
                config,
                weights,
                everything,
                args.batch_size,
                DataCollatorWithPadding(tokenizer),
                attention,
                args.warmup,
                args.steps,
            )
        )
    env = environment(args)
    speedups = print_report(env, checks, results)
    if args.json is not None:
        report = {
            "environment": env,
            "checks": checks,
            "results": [result.to_dict() for result in results],
            "ratios": speedups,
            "targets": {
                name: {"min": target_of(name), "pass": ratio >= target_of(name), "metric": metric_of(name)}
                for name, ratio in speedups.items()
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
