"""The accuracy-latency frontier of SST-2 deployments: fp32 and INT8 ONNX, width 1 and narrower.

    .venv/bin/python benchmarks/int8_frontier.py CHECKPOINT [--width-checkpoint CKPT --widths 0.5]
        [--calibrate 256] [--batch-size 32] [--seq-len 64] [--threads 2] [--blocks 10]
        [--runs-per-block 5] [--out FILE.md]

Models (all of the same checkpoints, all run by onnxruntime on the CPU):

* ``torch-export``: the torch backend's own ONNX export (``torch.onnx``, what ``zoo export``
  wrote before the core graph), the baseline every ratio is taken against;
* ``fp32``: the core's graph (:func:`zoo_core.onnx_export.write_onnx`, today's ``zoo export``);
* ``fp32-fused``: that graph through onnxruntime's BERT optimizer (``optimize_onnx``);
* ``int8``: ``zoo export --quantize int8``'s dynamic quantization of ``fp32``;
* ``int8-fused``: the same quantization of ``fp32-fused``;
* ``int8-static``: ``--calibrate N`` (MinMax, N training examples) of ``fp32``;

at width 1 from ``CHECKPOINT`` and at each ``--widths`` from ``--width-checkpoint`` (a
DynaBERT run's ``best/``, sliced like ``zoo export --width-mult``).  Every model's dev
accuracy is measured on the checkpoint's recorded dev split.  Latency: one batch of
``batch-size`` random-token rows ``seq-len`` wide (rows padded at the end to random lengths
from half to all of it), each model warmed up, then all timed in interleaved blocks
A B C ... A B C (``runs-per-block`` runs each), so load drift hits every model alike.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from zoo_core.checkpoint import open_model_dir
from zoo_core.flops import forward_flops
from zoo_core.models.config import BertConfig
from zoo_core.models.width import slice_to_width
from zoo_core.onnx_export import optimize_onnx, write_onnx
from zoo_core.runners.evaluate import predict_with
from zoo_core.runners.export import onnx_predictor
from zoo_core.runners.inference import load_checkpoint, load_split
from zoo_core.runners.int8 import Int8Spec, quantize_onnx
from zoo_core.tasks import compute_metrics

sys.path.insert(0, str(Path(__file__).parent))
from onnx_graph_latency import interleaved_times, random_batch, session, torch_export


def models_of(
    checkpoint: Path, width: float, out: Path, calibrate: int, torch_baseline: bool
) -> tuple[dict[str, Path], Any, Any, BertConfig]:
    """The ONNX files of ``checkpoint`` at ``width`` (see the module doc), its dev split, task and config."""
    loaded = load_checkpoint(checkpoint, None, "torch", "cpu")
    config, weights = loaded.checkpoint.config, loaded.checkpoint.load_weights()
    if width != 1.0:
        config, weights = slice_to_width(weights, config, width)
    tag = f"w{width:g}"
    out = out / tag
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if torch_baseline:  # width 1 only: the whole checkpoint
        files["torch-export"] = torch_export(checkpoint, out / "torch")
    files["fp32"] = write_onnx(config, weights, out / "fp32.onnx")
    optimize_onnx(files["fp32"], out / "fp32-fused.onnx", config)
    files["fp32-fused"] = out / "fp32-fused.onnx"
    train = load_split(loaded, None, "train")
    for name, source, spec in (
        ("int8", files["fp32"], Int8Spec()),
        ("int8-fused", files["fp32-fused"], Int8Spec()),
        ("int8-static", files["fp32"], Int8Spec(calibrate=calibrate)),
    ):
        quantize_onnx(source, out / f"{name}.onnx", spec, train)
        files[name] = out / f"{name}.onnx"
    named = {f"{tag} {k}": v for k, v in files.items()}
    return named, load_split(loaded, None, "dev"), loaded.task, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--width-checkpoint", type=Path)
    parser.add_argument("--widths", default="0.5")
    parser.add_argument("--calibrate", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--runs-per-block", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files, dev, task, config = models_of(args.checkpoint, 1.0, Path(tmp), args.calibrate, True)
        flops = dict.fromkeys(files, forward_flops(config, args.batch_size, args.seq_len))
        accuracy = {}
        for name, path in files.items():
            accuracy[name] = compute_metrics(task, predict_with(onnx_predictor(path), dev, 128), dev.labels)
        if args.width_checkpoint:
            for width in (float(w) for w in args.widths.split(",")):
                more, wdev, wtask, wconfig = models_of(
                    args.width_checkpoint, width, Path(tmp), args.calibrate, False
                )
                flops.update(dict.fromkeys(more, forward_flops(wconfig, args.batch_size, args.seq_len)))
                for name, path in more.items():
                    logits = predict_with(onnx_predictor(path), wdev, 128)
                    accuracy[name] = compute_metrics(wtask, logits, wdev.labels)
                files.update(more)
        vocab = open_model_dir(args.checkpoint).config.vocab_size
        feed = random_batch(vocab, args.batch_size, args.seq_len)
        sessions = {name: session(path, args.threads) for name, path in files.items()}
        times = interleaved_times(sessions, feed, args.warmup, args.blocks, args.runs_per_block)
        size = {name: path.stat().st_size / 2**20 for name, path in files.items()}
    base = float(np.median(times["w1 torch-export"]))
    lines = [
        f"# INT8 / width frontier, SST-2 dev ({datetime.date.today()})",
        "",
        f"{platform.processor() or platform.machine()}, onnxruntime {onnxruntime.__version__}, batch "
        f"{args.batch_size} x {args.seq_len} tokens, {args.threads} threads, {args.blocks} blocks x "
        f"{args.runs_per_block} runs (interleaved) after {args.warmup} warm-up each.",
        "",
        f"    {shlex.join([sys.executable, *sys.argv])}",
        "",
        "GFLOP/s: the model's matmul work on the batch (`zoo_core.flops.forward_flops`, every padded",
        "position) over the median latency; compare with `benchmarks/matmul_peak.py` on this machine.",
        "",
        "| model | dev accuracy | median ms | p90 ms | vs w1 torch-export | GFLOP/s | MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in files:
        median, p90 = float(np.median(times[name])), float(np.percentile(times[name], 90))
        lines.append(
            f"| {name} | {accuracy[name][task.main_metric]:.4f} | {median:.1f} | {p90:.1f} | "
            f"{median / base:.2f}x | {flops[name] / median / 1e6:.1f} | {size[name]:.1f} |"
        )
    block_medians = {
        name: [
            float(np.median(t[i : i + args.runs_per_block])) for i in range(0, len(t), args.runs_per_block)
        ]
        for name, t in times.items()
    }
    lines += ["", "Per-block medians (ms), to see drift:", ""]
    lines += [f"    {name:<22} " + " ".join(f"{v:7.1f}" for v in block_medians[name]) for name in files]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
