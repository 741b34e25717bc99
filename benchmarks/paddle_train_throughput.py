"""Training throughput of zoo's paddle backend against a PaddleSlim ``run_glue_ofa.py``-style loop.

    .venv/bin/python benchmarks/paddle_train_throughput.py [--steps 40] [--warmup 5] [--threads 2] [--json F]

Both train the real MiniLM-L6-H384 weights (``minilm-l6-h384`` with the same freshly
initialised classifier) on the same SST-2 training examples, batch 32, max_seq_length 64,
constant learning rate, one after the other in this process:

* **zoo paddle**: zoo's length-bucketed batches (``train_batches``, seed 42, epoch 0), each
  padded to its own longest sequence, ``train_step(trainer, batch, lr)`` of the paddle backend.
* **reference**: what ``run_glue_ofa.py`` does: ``paddlenlp.transformers.BertForSequenceClassification``
  loaded with the same weights, every batch padded to max_seq_length (64), ``input_ids`` and
  ``token_type_ids`` only (paddlenlp builds the mask from the padding id), cross-entropy,
  ``paddle.optimizer.AdamW`` with weight decay on all but biases and norms, ``clear_grad()``.

Timing covers collation/padding and the step, not tokenisation; the same examples are
timed in both.  Each is reported in samples/s, real (non-padding) tokens/s, padded tokens/s
and model GFLOP/s (``zoo_core.flops`` of the shapes each computes: zoo's batches at their own
length, the reference's at 64).  ``MKL_DEBUG_CPU_TYPE=5`` is set before paddle is imported (as the backend
does on AMD CPUs), so both loops get MKL's fast path.  Target: zoo >= 2.5x the reference.
"""

from __future__ import annotations

import json
import time

from zoo_paddle.env import prepare_paddle_env

prepare_paddle_env()

# ruff: noqa: E402  (paddle must be imported after prepare_paddle_env)
import numpy as np
import paddle
from paddlenlp.transformers import BertConfig as NLPConfig
from paddlenlp.transformers import BertForSequenceClassification as NLPBert
from sst2_setup import parse_args, rates, rates_line, sst2_workload  # benchmarks/, next to this script

from zoo_core.backend import Batch, TrainSpec
from zoo_core.trainers import train_step


def pad_to(batch: Batch, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch's ids, token types and labels with every sequence padded to ``length``."""
    extra = length - batch.input_ids.shape[1]
    ids = np.pad(batch.input_ids, ((0, 0), (0, extra)))
    types = np.pad(batch.token_type_ids, ((0, 0), (0, extra)))
    assert batch.labels is not None
    return ids, types, batch.labels


def main() -> int:
    """Time both loops on the same examples and print samples/s and the ratio."""
    args = parse_args(__doc__)
    work = sst2_workload(args)
    config, batches, timed = work.config, work.batches, work.timed
    backend, model = work.zoo_model("paddle", args.threads)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # before any step

    trainer = backend.make_trainer(model, TrainSpec("classification"))
    for batch in batches[: args.warmup]:
        train_step(trainer, batch, 2e-5)
    start = time.perf_counter()
    for batch in timed:
        train_step(trainer, batch, 2e-5)
    zoo = rates("zoo paddle", timed, time.perf_counter() - start, config)
    zoo_rate = zoo["samples_per_s"]

    nlp = NLPBert(
        NLPConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps,
            num_labels=config.num_labels,
        )
    )
    nlp.set_state_dict(state)
    decay = [p.name for n, p in nlp.named_parameters() if not any(k in n for k in ("bias", "norm"))]
    optimizer = paddle.optimizer.AdamW(
        learning_rate=2e-5,
        parameters=nlp.parameters(),
        weight_decay=0.01,
        apply_decay_param_fun=lambda name: name in decay,
    )
    loss_fn = paddle.nn.CrossEntropyLoss()
    nlp.train()

    def reference_step(batch: Batch) -> None:
        ids, types, labels = pad_to(batch, args.max_seq_length)
        logits = nlp(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types))
        loss = loss_fn(logits, paddle.to_tensor(labels))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()

    for batch in batches[: args.warmup]:
        reference_step(batch)
    start = time.perf_counter()
    for batch in timed:
        reference_step(batch)
    reference = rates(
        f"run_glue_ofa-style (padded to {args.max_seq_length})",
        timed,
        time.perf_counter() - start,
        config,
        lambda batch: args.max_seq_length,
    )
    reference_rate = reference["samples_per_s"]

    print(
        f"paddle {paddle.__version__}, threads {args.threads}, batch 32, "
        f"max_seq_length {args.max_seq_length}, "
        f"{args.steps} timed steps after {args.warmup}"
    )
    print(f"zoo paddle (per-batch padding):     {rates_line(zoo)}")
    print(f"run_glue_ofa-style (padded to {args.max_seq_length}): {rates_line(reference)}")
    print(f"speed-up: {zoo_rate / reference_rate:.2f}x (target >= 2.5x)")
    if args.json is not None:
        ratio = zoo_rate / reference_rate
        name = "zoo paddle / run_glue_ofa-style padded"
        report = {
            "environment": {"paddle": paddle.__version__, "threads": args.threads, "steps": args.steps},
            "results": [zoo, reference],
            "ratios": {name: ratio},
            "targets": {name: {"min": 2.5, "pass": ratio >= 2.5}},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
