"""The portable checkpoint: a directory any backend (and ``transformers``) can read.

    config.json         Hugging Face BERT config (labels, head count, width)
    model.safetensors   weights in Hugging Face BertForSequenceClassification names/layouts
    vocab.txt           the WordPiece vocabulary
    tokenizer_config.json  {"do_lower_case": ...}
    zoo.json            recipe, metrics, versions, sha256 of model.safetensors

Directories are written atomically: everything goes into a temporary sibling that
is renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.errors import CheckpointError, ModelError
from zoo_core.files import check_fields, load_json, quote, sha256_file
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, check_weights, normalize_names

FORMAT = "zoo-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "zoo.json"
#: the types of the zoo.json fields zoo reads back (checked when a checkpoint is opened)
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "task": str,
    "kind": str,
    "backend": str,
    "weights_sha256": str,
    "metrics": dict,
    "width_mult_list": list,
    "width_mult_list.*": float,
    "task_spec": dict,
    "data_split": dict,
    "recipe": dict,
    "recipe.data": dict,
    "recipe.data.dir": (str, type(None)),
    "recipe.data.max_seq_length": int,
}


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of zoo-core, numpy, python and the given distributions."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("zoo-core", "numpy", *names):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def atomic_directory(
    target: Path, fill: Callable[[Path], None], durable: Callable[[str], None] | None = None
) -> Path:
    """Create ``target`` by calling ``fill(tmp_dir)`` and renaming ``tmp_dir`` into place.

    An existing ``target`` is replaced only after ``fill`` succeeded.  ``durable(what)``,
    if given, is called before each step that changes the disk (a run directory's
    write counter and fault-injection hook, :func:`zoo_core.runs.durable_write`).
    """
    target = Path(target)
    note = durable or (lambda what: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        note(f"fill {tmp}")
        fill(tmp)
        if target.exists():
            note(f"move aside {target}")
            os.replace(target, old)
        try:
            note(f"rename {tmp.name} to {target}")
            os.replace(tmp, target)
        except BaseException:
            if old.exists() and not target.exists():
                os.replace(old, target)  # put the previous directory back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_checkpoint(
    target: Path,
    config: BertConfig,
    weights: Mapping[str, np.ndarray],
    vocab_path: Path,
    meta: Mapping[str, Any],
    *,
    lowercase: bool = True,
    extra: Callable[[Path], None] | None = None,
    durable: Callable[[str], None] | None = None,
) -> Path:
    """Write a portable checkpoint atomically; ``extra(tmp_dir)`` may add files.

    ``meta`` goes into zoo.json together with the format tag, the weights' sha256
    and the creation time; ``durable`` goes to :func:`atomic_directory`.
    """
    from safetensors.numpy import save_file

    check_weights(weights, config, source=str(target))

    def fill(tmp: Path) -> None:
        config.save(tmp)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        save_file(arrays, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_FILE, 0o644)  # safetensors writes 0600; checkpoints are meant to be shared
        shutil.copyfile(vocab_path, tmp / "vocab.txt")
        (tmp / "tokenizer_config.json").write_text(
            json.dumps({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"}) + "\n"
        )
        full = {
            "format": FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **meta,
            "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
        }
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n")
        if extra is not None:
            extra(tmp)

    return atomic_directory(target, fill, durable)


@dataclass
class ModelDir:
    """A readable model directory: a zoo checkpoint or a Hugging Face BERT directory."""

    path: Path
    config: BertConfig
    vocab_path: Path
    lowercase: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_zoo_checkpoint(self) -> bool:
        """True when the directory carries a zoo.json."""
        return bool(self.meta)

    def load_weights(self) -> Weights:
        """The weights in canonical names, sha256-verified for zoo checkpoints."""
        wfile = self.path / WEIGHTS_FILE
        if not wfile.is_file():
            raise CheckpointError(f"{self.path}: no {WEIGHTS_FILE} (pickle formats are not read)")
        expected = self.meta.get("weights_sha256")
        if expected and sha256_file(wfile) != expected:
            raise CheckpointError(
                f"{wfile}: sha256 does not match zoo.json (truncated or modified checkpoint)"
            )
        from safetensors.numpy import load_file

        try:
            raw = load_file(str(wfile))
        except Exception as exc:
            raise CheckpointError(f"{wfile}: unreadable safetensors file ({exc})") from None
        weights = {k: v.astype(np.float32, copy=False) for k, v in normalize_names(raw).items()}
        check_weights(weights, self.config, source=str(wfile), allow_missing=("bert.pooler.", "classifier."))
        return weights


def open_model_dir(path: Path) -> ModelDir:
    """Open a model directory, checking that config.json and vocab.txt are there."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory does not exist")
    meta: dict[str, Any] = {}
    meta_file = path / META_FILE
    if meta_file.exists():
        meta = load_json(meta_file, error=CheckpointError, context="unreadable")
        check_fields(meta, META_FIELDS, meta_file, error=CheckpointError, context="unreadable")
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_file}: format {quote(meta.get('format'))} is not {FORMAT!r}")
    config = BertConfig.load(path)
    vocab = path / "vocab.txt"
    if not vocab.is_file():
        raise ModelError(f"{vocab}: vocabulary file not found (a model directory needs vocab.txt)")
    lowercase = True
    tok_cfg = path / "tokenizer_config.json"
    if tok_cfg.exists():
        tok = load_json(tok_cfg, error=ModelError)
        check_fields(tok, {"do_lower_case": bool}, tok_cfg, error=ModelError)
        lowercase = tok.get("do_lower_case", True)
    return ModelDir(path=path, config=config, vocab_path=vocab, lowercase=lowercase, meta=meta)
