"""Tokenised datasets in flat arrays, cached on disk as one ``.npz`` per split.

A :class:`TokenizedDataset` stores every example's token ids back to back in one
int32 array with an offsets array, so a 67k-example split is three numpy arrays
rather than 67k Python lists.  :func:`load_dataset` caches it keyed by the data
file's bytes, the tokenizer's fingerprint, the maximum length, task and split; a
changed file or vocabulary simply misses the cache.  Old cache files are never
deleted automatically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo_core.data.readers import Examples, read_split
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.files import sha256_file
from zoo_core.tasks.glue import Task

logger = logging.getLogger(__name__)

#: bump when the cached layout or tokenisation changes, to invalidate old caches
CACHE_VERSION = 1


@dataclass
class TokenizedDataset:
    """Token ids of ``n`` examples: example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    ``type_ids`` runs parallel to ``ids``; ``labels`` holds int64 label indices
    (float32 scores for regression) or None; ``source`` is the file it came from.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None
    source: str = ""

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens of every example (int64, special tokens included)."""
        return np.diff(self.offsets)

    def subset(self, indices: np.ndarray) -> TokenizedDataset:
        """The examples at ``indices`` (in that order), as a dataset of their own."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[indices]
        positions = (
            np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
            if len(indices)
            else np.zeros(0, np.int64)
        )
        labels = None if self.labels is None else self.labels[indices]
        return TokenizedDataset(self.ids[positions], self.type_ids[positions], offsets, labels, self.source)

    def check(self) -> None:
        """Raise ValueError unless the arrays are consistent with each other."""
        n = len(self)
        ok = (
            n >= 0
            and self.ids.ndim == self.type_ids.ndim == self.offsets.ndim == 1
            and self.ids.shape == self.type_ids.shape
            and int(self.offsets[0]) == 0
            and int(self.offsets[-1]) == self.ids.shape[0]
            and bool(np.all(np.diff(self.offsets) >= 0))
            and (self.labels is None or self.labels.shape == (n,))
        )
        if not ok:
            raise ValueError(f"inconsistent tokenised dataset from {self.source}")


def tokenize_examples(
    examples: Examples, tokenizer: WordPieceTokenizer, max_seq_length: int
) -> TokenizedDataset:
    """Tokenise ``examples`` (truncated to ``max_seq_length`` tokens) into flat arrays."""
    ids, type_ids = tokenizer.encode_batch(examples.text_a, examples.text_b, max_seq_length)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in ids], out=offsets[1:])
    return TokenizedDataset(
        ids=np.concatenate(ids).astype(np.int32, copy=False) if ids else np.zeros(0, np.int32),
        type_ids=np.concatenate(type_ids).astype(np.int8) if type_ids else np.zeros(0, np.int8),
        offsets=offsets,
        labels=examples.labels,
        source=examples.source,
    )


def default_cache_dir() -> Path:
    """Where tokenised datasets are cached: ``$ZOO_CACHE_DIR``, else ``~/.cache/zoo``."""
    configured = os.environ.get("ZOO_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "zoo"


def _cache_key(
    data_file: Path, tokenizer: WordPieceTokenizer, max_seq_length: int, task: Task, split: str
) -> str:
    """sha256 over the data file's bytes and everything else the tokenised output depends on."""
    digest = hashlib.sha256(sha256_file(data_file).encode())
    settings = f"v{CACHE_VERSION}|{tokenizer.fingerprint}|{max_seq_length}|{task.name}|{split}"
    digest.update(b"\0" + settings.encode())
    return digest.hexdigest()


def load_cached(path: Path, key: str, source: str) -> TokenizedDataset | None:
    """The dataset cached at ``path``, or None if it is missing, corrupt or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            labels = npz["labels"] if "labels" in npz.files else None
            dataset = TokenizedDataset(npz["ids"], npz["type_ids"], npz["offsets"], labels, source)
        dataset.check()
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, exc)
        return None
    return dataset


def save_cached(path: Path, key: str, dataset: TokenizedDataset) -> None:
    """Write ``dataset`` to ``path`` atomically (temp file + rename); warn if that fails."""
    arrays = {"key": np.array(key), "ids": dataset.ids, "type_ids": dataset.type_ids}
    arrays["offsets"] = dataset.offsets
    if dataset.labels is not None:
        arrays["labels"] = dataset.labels
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        logger.warning("could not write dataset cache %s (%s)", path, exc)
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def load_dataset(
    task: Task,
    data_dir: Path,
    split: str,
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    cache_dir: Path | None,
) -> TokenizedDataset:
    """Read and tokenise split ``split`` of ``task`` from ``data_dir``, through the cache.

    With ``cache_dir`` None nothing is cached.  A corrupt cache file is ignored and
    rewritten; an unwritable cache directory only logs a warning.
    """
    data_file = Path(data_dir) / task.split(split).filename
    if cache_dir is None or not data_file.is_file():  # a missing file: read_split explains
        return tokenize_examples(read_split(task, Path(data_dir), split), tokenizer, max_seq_length)
    key = _cache_key(data_file, tokenizer, max_seq_length, task, split)
    cache_file = Path(cache_dir) / f"{task.name}-{split}-{max_seq_length}-{key[:16]}.npz"
    cached = load_cached(cache_file, key, str(data_file))
    if cached is not None:
        return cached
    dataset = tokenize_examples(read_split(task, Path(data_dir), split), tokenizer, max_seq_length)
    save_cached(cache_file, key, dataset)
    return dataset
