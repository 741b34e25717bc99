"""``zoo convert``: move a BERT checkpoint between zoo, Hugging Face, torch, PaddleNLP and MindSpore.

Sources (detected from the path): a portable checkpoint or Hugging Face directory with
``model.safetensors``; a torch state dict (``pytorch_model.bin``, ``*.pt``); PaddleNLP's
``model_state.pdparams``; a MindSpore ``*.ckpt``.  The directory must hold
``config.json`` and ``vocab.txt`` (a run directory means its ``best/``).  Targets:

* ``hf``: a Hugging Face directory (config.json, model.safetensors, vocab.txt,
  tokenizer_config.json);
* ``torch`` / ``paddle`` / ``mindspore``: the same with the weights in the framework's
  own file (``pytorch_model.bin``, ``model_state.pdparams``, ``model.ckpt``), written by
  the backend (``Backend.save_framework_checkpoint``).

Everything passes through canonical weights.  Each framework step runs in a process of
its own (``python -m zoo_core.convert worker ...``: paddle and mindspore cannot share
one), and the written file is verified by loading it back on its framework and
comparing logits with the numpy reference forward of the source weights (1e-4).
Pickle-based sources (``.bin``, ``.pt``, ``.pdparams``) are read only with
``trust_pickle``: unpickling a file can run code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import Batch, capable
from zoo_core.checkpoint import WEIGHTS_FILE, open_model_dir, write_checkpoint
from zoo_core.errors import CheckpointError, ModelError, ZooError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights

TARGETS = ("hf", "torch", "paddle", "mindspore")
#: how a weights file's name tells its framework
FRAMEWORK_SUFFIXES = {
    ".bin": "torch",
    ".pt": "torch",
    ".pth": "torch",
    ".pdparams": "paddle",
    ".ckpt": "mindspore",
}
#: frameworks whose checkpoint files are pickles
PICKLED = frozenset({"torch", "paddle"})
#: largest |logit difference| a conversion may introduce
TOLERANCE = 1e-4
#: the files of a model directory besides its weights
SIDE_FILES = ("config.json", "vocab.txt", "tokenizer_config.json")


@dataclass(frozen=True)
class Source:
    """A checkpoint to convert: its framework (``safetensors`` for zoo/HF), directory and weights file."""

    kind: str
    directory: Path
    file: Path


def detect_source(path: Path) -> Source:
    """What ``path`` is: a run, a model directory, or a weights file; raises a one-line error otherwise."""
    path = Path(path)
    if (path / "best" / "config.json").is_file():
        path = path / "best"
    if path.is_file():
        if path.suffix == ".safetensors":
            return Source("safetensors", path.parent, path)
        kind = FRAMEWORK_SUFFIXES.get(path.suffix)
        if kind is None:
            raise ModelError(
                f"{path}: unknown weights file; expected one of .safetensors, {', '.join(FRAMEWORK_SUFFIXES)}"
            )
        return Source(kind, path.parent, path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such file or directory")
    if (path / WEIGHTS_FILE).is_file():
        return Source("safetensors", path, path / WEIGHTS_FILE)
    found = sorted(p for p in path.iterdir() if p.suffix in FRAMEWORK_SUFFIXES)
    if len(found) != 1:
        what = (
            "no weights file"
            if not found
            else f"{len(found)} weights files ({', '.join(p.name for p in found)})"
        )
        raise ModelError(f"{path}: {what}; pass the weights file itself")
    return Source(FRAMEWORK_SUFFIXES[found[0].suffix], path, found[0])


def check_batch(config: BertConfig, seed: int = 0) -> Batch:
    """A small batch of random token ids (one row padded) to compare logits on."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config.vocab_size, size=(4, 16), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    ids[1, 10:] = config.pad_token_id
    return Batch(input_ids=ids, token_type_ids=np.zeros_like(ids), attention_mask=mask)


def reference_logits(weights: Weights, config: BertConfig) -> np.ndarray:
    """The numpy reference forward's logits on :func:`check_batch`."""
    from zoo_core.testing.reference import reference_logits as forward

    return forward(weights, config, check_batch(config))


def _worker(args: list[str], what: str) -> dict[str, Any]:
    """Run ``python -m zoo_core.convert worker ARGS``; its last stdout line is a JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "zoo_core.convert", "worker", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ZooError(f"{what} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def read_source(source: Source, portable: Path, say: Callable[[str], None]) -> None:
    """Write ``source`` as a portable checkpoint at ``portable`` (a framework file through its backend).

    A source without pooler or classifier (a pretrained backbone) gets freshly
    initialised ones (seed 0), and ``say`` tells so.
    """
    if source.kind != "safetensors":
        report = _worker(
            [
                "read",
                "--backend",
                source.kind,
                "--file",
                str(source.file),
                "--model-dir",
                str(source.directory),
                "--out",
                str(portable),
            ],
            f"reading {source.file} with the {source.kind} backend",
        )
        added = list(report.get("initialised", []))
    else:
        model_dir = open_model_dir(source.directory)
        loaded = model_dir.load_weights()
        weights = {**init_weights(model_dir.config, 0), **loaded}
        added = sorted(set(weights) - set(loaded))
        meta = {**model_dir.meta, "converted_from": str(source.file)}
        write_checkpoint(
            portable, model_dir.config, weights, model_dir.vocab_path, meta, lowercase=model_dir.lowercase
        )
    if added:
        parts = sorted({"pooler" if "pooler" in name else "classifier" for name in added})
        say(f"the source has no {' or '.join(parts)}: initialised (seed 0)")


def write_target(portable: Path, to: str, output: Path) -> float:
    """Write portable checkpoint ``portable`` as ``to`` into ``output``; return the verified max |diff|."""
    model_dir = open_model_dir(portable)
    expected = reference_logits(model_dir.load_weights(), model_dir.config)
    if to == "hf":
        output.mkdir(parents=True)
        for name in (WEIGHTS_FILE, *SIDE_FILES):
            shutil.copyfile(portable / name, output / name)
        written = open_model_dir(output)
        return float(np.abs(reference_logits(written.load_weights(), written.config) - expected).max())
    report = _worker(
        ["write", "--backend", to, "--portable", str(portable), "--out", str(output)],
        f"writing a {to} checkpoint",
    )
    logits = np.asarray(report["logits"], dtype=np.float32)
    return float(np.abs(logits - expected).max())


def convert(
    src: Path,
    to: str,
    output: Path | None = None,
    *,
    trust_pickle: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Convert ``src`` to format ``to`` in ``output`` (default: ``<source dir>-<to>``); see the module doc."""
    if to not in TARGETS:
        raise ModelError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    source = detect_source(src)
    if source.kind in PICKLED and not trust_pickle:
        raise CheckpointError(
            f"{source.file} is a pickle ({source.kind}); loading it can run code. "
            "Pass --trust-pickle if you trust where it came from"
        )
    output = (
        Path(output) if output is not None else source.directory.with_name(f"{source.directory.name}-{to}")
    )
    if output.exists():
        raise ModelError(f"{output}: already exists; pass another --output or remove it")
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.is_dir() else None) as tmp:
        portable, staged = Path(tmp) / "portable", Path(tmp) / "out"
        say(f"reading {source.file} ({source.kind})")
        read_source(source, portable, say)
        diff = write_target(portable, to, staged)
        if not diff <= TOLERANCE:
            raise CheckpointError(
                f"the {to} checkpoint's logits differ from the source's by {diff:.2e}; not kept"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(output)
    say(f"wrote {output} ({to}); logits match the source within {diff:.1e}")
    return output


# ---- the worker: one framework per process --------------------------------------------------


def _worker_read(backend_name: str, file: Path, model_dir: Path, out: Path) -> dict[str, Any]:
    """Load a framework file into the backend's model and write it as a portable checkpoint.

    The model starts from ``init_weights(config, 0)``, so a file without pooler or
    classifier gets those (reported as ``initialised``).
    """
    from zoo_core.plugins import create_backend

    config = BertConfig.load(model_dir)
    vocab = model_dir / "vocab.txt"
    if not vocab.is_file():
        raise ModelError(f"{vocab}: vocabulary file not found (a model directory needs vocab.txt)")
    backend = create_backend(backend_name, "cpu", {})
    converter = capable(backend, "convert")
    model = backend.build_model(config)
    start = init_weights(config, 0)
    backend.load_weights(model, start)
    converter.load_framework_checkpoint(model, file)
    weights = backend.dump_weights(model)
    initialised = [
        n
        for n in weights
        if n.startswith(("bert.pooler.", "classifier.")) and np.array_equal(weights[n], start[n])
    ]
    write_checkpoint(out, config, weights, vocab, {"converted_from": str(file)})
    return {"initialised": initialised}


def _worker_write(backend_name: str, portable: Path, out: Path) -> dict[str, Any]:
    """Write a portable checkpoint as the backend's framework file, load it back, report its logits."""
    from zoo_core.plugins import create_backend

    model_dir = open_model_dir(portable)
    backend = create_backend(backend_name, "cpu", {})
    converter = capable(backend, "convert")
    model = backend.build_model(model_dir.config)
    backend.load_weights(model, model_dir.load_weights())
    out.mkdir(parents=True)
    path = converter.save_framework_checkpoint(model, out)
    for name in SIDE_FILES:
        shutil.copyfile(portable / name, out / name)
    fresh = backend.build_model(model_dir.config)
    converter.load_framework_checkpoint(fresh, path)
    logits = backend.predict(fresh, check_batch(model_dir.config))
    return {"file": path.name, "logits": np.asarray(logits, dtype=np.float32).tolist()}


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo_core.convert worker read|write ...``: one framework step of a conversion."""
    parser = argparse.ArgumentParser(prog="python -m zoo_core.convert worker")
    parser.add_argument("worker", choices=["worker"])
    parser.add_argument("step", choices=["read", "write"])
    parser.add_argument("--backend", required=True)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--portable", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.step == "read":
            report = _worker_read(args.backend, args.file, args.model_dir, args.out)
        else:
            report = _worker_write(args.backend, args.portable, args.out)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
