"""Training-step time of zoo's torch backend against a plain Hugging Face loop.

    .venv/bin/python plugins/torch_backend/benchmarks/step_time.py [--steps 10] [--compile]

MiniLM-shaped model (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522), batch 32,
every batch padded to T in {16, 64} with real lengths drawn from [T/2, T].  Both sides
start from the same weights and see the same batches.  The HF loop is what a user
writes: ``model(**inputs, labels=...).loss.backward()``, clip, ``AdamW.step()``
(torch's default implementation on CPU), ``zero_grad()``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from zoo_torch.backend import TorchBackend

from zoo_core.backend import Batch, TrainSpec
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import init_weights, is_no_decay
from zoo_core.trainers import train_step

CONFIG = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def make_batches(n: int, batch_size: int, length: int, seed: int = 0) -> list[Batch]:
    """``n`` batches padded to ``length`` with lengths in [length/2, length]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lengths = rng.integers(length // 2, length + 1, batch_size)
        lengths[0] = length
        ids = rng.integers(1000, CONFIG.vocab_size, (batch_size, length))
        mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
        ids = ids * mask
        out.append(Batch(ids, np.zeros_like(ids), mask, rng.integers(0, 2, batch_size)))
    return out


def timed(fn, batches: list[Batch], warmup: int) -> float:
    """Median seconds per call of ``fn(batch)`` after ``warmup`` untimed calls."""
    for b in batches[:warmup]:
        fn(b)
    times = []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def zoo_step(weights, compile_: bool = False, fused: bool | None = True, foreach: bool | None = None):
    backend = TorchBackend("cpu")
    model = backend.build_model(CONFIG)
    backend.load_weights(model, weights)
    trainer = backend.make_trainer(model, TrainSpec("classification", options={"compile": compile_}))
    if fused is not True:  # swap the optimizer for the comparison
        groups = [
            {"params": [p for n, p in model.named_parameters() if not is_no_decay(n)], "weight_decay": 0.01},
            {"params": [p for n, p in model.named_parameters() if is_no_decay(n)], "weight_decay": 0.0},
        ]
        trainer.optimizer = torch.optim.AdamW(groups, lr=0.0, fused=fused, foreach=foreach)
    return lambda b: train_step(trainer, b, 1e-5)


def hf_step(weights, attn: str):
    from transformers import BertConfig as HFConfig
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(HFConfig(**CONFIG.to_hf_dict(), attn_implementation=attn))
    assert model.config._attn_implementation == attn, model.config._attn_implementation
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    model.train()
    groups = [
        {"params": [p for n, p in model.named_parameters() if not is_no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if is_no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-5)

    def step(b: Batch) -> float:
        out = model(
            input_ids=torch.from_numpy(b.input_ids),
            token_type_ids=torch.from_numpy(b.token_type_ids),
            attention_mask=torch.from_numpy(b.attention_mask),
            labels=torch.from_numpy(b.labels),
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return out.loss.item()

    return step


def optimizer_share(weights, batches: list[Batch]) -> None:
    """Where one of our steps spends its time: forward+backward, clip, AdamW."""
    backend = TorchBackend("cpu")
    model = backend.build_model(CONFIG)
    backend.load_weights(model, weights)
    trainer = backend.make_trainer(model, TrainSpec("classification"))
    from zoo_torch.model import batch_inputs

    parts: dict[str, list[float]] = {"fwd+bwd": [], "clip": [], "adamw": []}
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        logits = model(**batch_inputs(b, torch.device("cpu"))).logits
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(b.labels)).backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainer.params, 1.0)
        t2 = time.perf_counter()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 3:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[k].append(v)
    total = sum(statistics.median(v) for v in parts.values())
    print(
        "    "
        + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in parts.items())
        + f"  (AdamW {statistics.median(parts['adamw']) / total:.0%} of the step)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(dynamic=True)")
    parser.add_argument("--optimizers", action="store_true", help="also time foreach / for-loop AdamW")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = init_weights(CONFIG, 0)
    warmup = 3
    for length in args.lengths:
        batches = make_batches(warmup + args.steps, 32, length)
        print(f"batch 32 x seq {length}, {args.threads} threads, median of {args.steps} steps:")
        runs = {
            "zoo torch (fused AdamW)": lambda: zoo_step(weights),
            "HF eager": lambda: hf_step(weights, "eager"),
            "HF sdpa": lambda: hf_step(weights, "sdpa"),
        }
        if args.optimizers:
            runs["zoo torch (foreach AdamW)"] = lambda: zoo_step(weights, fused=None, foreach=True)
            runs["zoo torch (for-loop AdamW)"] = lambda: zoo_step(weights, fused=None, foreach=False)
        results = {}
        for name, make in runs.items():
            results[name] = timed(make(), batches, warmup)
        if args.compile:
            t0 = time.perf_counter()
            step = zoo_step(weights, compile_=True)
            step(batches[0])
            step(make_batches(1, 32, length // 2 + 3, seed=1)[0])  # a second shape: dynamic kicks in
            print(f"  compile warm-up (2 shapes): {time.perf_counter() - t0:.1f} s")
            results["zoo torch + compile"] = timed(step, batches, warmup)
        ours = results["zoo torch (fused AdamW)"]
        for name, sec in results.items():
            print(f"  {name:28s} {sec * 1e3:7.1f} ms/step   {sec / ours:.2f}x our time")
        optimizer_share(weights, batches)


if __name__ == "__main__":
    main()
