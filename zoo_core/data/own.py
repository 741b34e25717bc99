"""Own tasks' data: the user's CSV, TSV or JSON Lines files, read and tokenised in bounded memory.

Files are read by pyarrow (:mod:`zoo_core.data.tables`): the columns stay Arrow
arrays, labels are mapped to indices with ``pyarrow.compute``, and the text is
tokenised in chunks straight into the flat arrays of a :class:`TokenizedDataset`,
so a million-row file never becomes a million Python objects.  Tokenised files go
through the same content-keyed cache as GLUE splits.

Without a dev file, ``data.dev_split`` of the training file becomes the dev split:
seeded, stratified by label for classification (scikit-learn's
``train_test_split``), disjoint from train, and recorded (:func:`split_record`) in
every checkpoint's zoo.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.data.dataset import CACHE_VERSION, TokenizedDataset, load_cached, save_cached
from zoo_core.data.tables import Table, guess_format, read_table
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.datasets import prepare_hint
from zoo_core.errors import DataError, TaskError
from zoo_core.files import sha256_file
from zoo_core.tasks.glue import Columns, Task
from zoo_core.tasks.own import own_task

#: examples tokenised at once: bounds the Python objects alive during tokenisation
CHUNK = 16384
#: the splits an own task has
OWN_SPLITS = ("train", "dev", "test")


def _columns(task: Task, labelled: bool) -> list[str | int]:
    """The columns to read for ``task``: text, text_pair if any, and the label if ``labelled``."""
    assert task.columns is not None
    wanted = [task.columns.text]
    if task.columns.text_pair is not None:
        wanted.append(task.columns.text_pair)
    if labelled:
        wanted.append(task.columns.label)
    return wanted


def _first(mask: np.ndarray) -> int:
    """Index of the first True of a boolean array."""
    return int(np.flatnonzero(mask)[0])


def _clean_labels(table: Table, column: str | int) -> Any:
    """The label column with surrounding whitespace stripped; a blank label is a DataError."""
    import pyarrow.compute as pc

    labels = pc.utf8_trim_whitespace(table.columns[column])
    blank = pc.equal(pc.utf8_length(labels), 0).to_numpy(zero_copy_only=False)
    if blank.any():
        raise DataError(f"{table.location(_first(blank))}: blank label (column {column!r})")
    return labels


def _sorted_labels(values: list[str]) -> list[str]:
    """Label names in their natural order: numerically if all are numbers, else alphabetically."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def discover_labels(path: Path, fmt: str, label: str | int) -> list[str]:
    """The sorted set of labels in the training file (reads only the label column)."""
    import pyarrow.compute as pc

    table = read_table(path, guess_format(path, fmt)[0], [label])
    return _sorted_labels([str(v) for v in pc.unique(_clean_labels(table, label)).to_pylist()])


def resolve_own_task(config: Any, data: Any) -> Task:
    """The own task a recipe defines (``config`` an OwnTaskConfig, ``data`` its DataConfig).

    Its labels are ``config.labels`` or, when absent, the sorted set found in ``data.train``.
    """
    columns = Columns(config.text, config.text_pair, config.label)
    labels: list[str] = []
    if config.type == "classification":
        labels = config.labels or discover_labels(data.train, data.format, config.label)
    return own_task(config.name, config.type, columns, labels, config.metrics)


def _label_indices(task: Task, table: Table) -> np.ndarray:
    """Labels as int64 indices into ``task.labels``, or float32 scores for regression."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert task.columns is not None
    column = task.columns.label
    labels = _clean_labels(table, column)
    if task.is_regression:
        return _scores(task, table, labels)
    index = pc.index_in(labels, value_set=pa.array(task.labels, pa.string()))
    unknown = index.is_null().to_numpy(zero_copy_only=False)
    if unknown.any():
        row = _first(unknown)
        shown = ", ".join(task.labels[:20]) + (", ..." if len(task.labels) > 20 else "")
        raise DataError(
            f"{table.location(row)}: label '{labels[row].as_py()}' is not one of task {task.name}'s labels "
            f"({shown}); every label must occur in the training file or task.labels"
        )
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def _scores(task: Task, table: Table, labels: Any) -> np.ndarray:
    """A regression label column as finite float32 scores; the first bad value is a DataError."""
    out = np.empty(len(labels), dtype=np.float32)
    for start in range(0, len(labels), CHUNK):
        values = labels.slice(start, CHUNK).to_pylist()
        try:
            chunk = np.asarray(values, dtype=np.float64)
        except ValueError:
            chunk = np.full(len(values), np.nan)
            for i, value in enumerate(values):
                try:
                    chunk[i] = float(value)
                except ValueError:
                    raise DataError(
                        f"{table.location(start + i)}: label '{value}' is not a number "
                        f"(task {task.name} is a regression)"
                    ) from None
        bad = ~np.isfinite(chunk)
        if bad.any():
            i = _first(bad)
            raise DataError(f"{table.location(start + i)}: label '{values[i]}' is not a finite number")
        out[start : start + len(values)] = chunk
    return out


def tokenize_columns(
    text: Any, text_pair: Any | None, tokenizer: WordPieceTokenizer, max_seq_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, type ids and offsets of Arrow string arrays, tokenised :data:`CHUNK` rows at a time."""
    ids: list[np.ndarray] = []
    type_ids: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for start in range(0, len(text), CHUNK):
        a = text.slice(start, CHUNK).to_pylist()
        b = None if text_pair is None else text_pair.slice(start, CHUNK).to_pylist()
        chunk_ids, chunk_types = tokenizer.encode_batch(a, b, max_seq_length)
        lengths.append(np.fromiter((len(x) for x in chunk_ids), dtype=np.int64, count=len(chunk_ids)))
        ids.append(np.concatenate(chunk_ids).astype(np.int32, copy=False))
        type_ids.append(np.concatenate(chunk_types).astype(np.int8))
    offsets = np.zeros(len(text) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return (
        np.concatenate(ids) if ids else np.zeros(0, np.int32),
        np.concatenate(type_ids) if type_ids else np.zeros(0, np.int8),
        offsets,
    )


def read_own_file(
    task: Task,
    path: Path,
    fmt: str,
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    *,
    labelled: bool = True,
) -> TokenizedDataset:
    """Read and tokenise one file of ``task`` (no cache); labels as indices, or None if not ``labelled``."""
    assert task.columns is not None
    path = Path(path)
    table = read_table(path, guess_format(path, fmt)[0], _columns(task, labelled))
    if table.num_rows == 0:
        raise DataError(f"{path}: no examples")
    labels = _label_indices(task, table) if labelled else None
    pair = None if task.columns.text_pair is None else table.columns[task.columns.text_pair]
    ids, type_ids, offsets = tokenize_columns(table.columns[task.columns.text], pair, tokenizer, max_seq_length)
    return TokenizedDataset(ids, type_ids, offsets, labels, str(path))


def load_own_file(
    task: Task,
    path: Path,
    fmt: str,
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    cache_dir: Path | None,
    sha256: str | None = None,
) -> TokenizedDataset:
    """:func:`read_own_file` of a labelled file, through the content-keyed cache in ``cache_dir``.

    ``sha256`` is the file's (:func:`sha256_file`), if the caller has it already.
    """
    path = Path(path)
    if cache_dir is None:
        return read_own_file(task, path, fmt, tokenizer, max_seq_length)
    digest = hashlib.sha256((sha256 or _sha256_of(path)).encode())
    settings = (
        f"v{CACHE_VERSION}|own|{tokenizer.fingerprint}|{max_seq_length}|{guess_format(path, fmt)[0]}|"
        f"{task.columns}|{task.is_regression}|{task.labels}"
    )
    digest.update(b"\0" + settings.encode())
    key = digest.hexdigest()
    cache_file = Path(cache_dir) / f"{task.name}-{path.stem}-{max_seq_length}-{key[:16]}.npz"
    cached = load_cached(cache_file, key, str(path))
    if cached is not None:
        return cached
    dataset = read_own_file(task, path, fmt, tokenizer, max_seq_length)
    save_cached(cache_file, key, dataset)
    return dataset


def dev_split_indices(
    task: Task, labels: np.ndarray, fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and dev indices: ``fraction`` of the examples, stratified by label when classifying."""
    from sklearn.model_selection import train_test_split

    stratify = None
    if not task.is_regression:
        counts = np.bincount(labels, minlength=task.num_labels)
        rare = [(task.labels[i], int(c)) for i, c in enumerate(counts) if c == 1]
        if rare:
            name, count = rare[0]
            raise DataError(
                f"{source}: label '{name}' has {count} example; a stratified data.dev_split needs at "
                "least 2 of each label (add examples, drop the label, or give data.dev)"
            )
        stratify = labels
    try:
        train, dev = train_test_split(
            np.arange(len(labels)), test_size=fraction, random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(f"{source}: cannot split off data.dev_split {fraction:g}: {exc}") from None
    return np.sort(train), np.sort(dev)


@dataclass
class OwnSplits:
    """An own task's training and dev data, and how dev was made (zoo.json's ``data_split``)."""

    train: TokenizedDataset
    dev: TokenizedDataset
    record: dict[str, Any]


def _sha256_of(path: Path) -> str:
    """sha256 of a data file that must exist (a DataError names it otherwise)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found{prepare_hint(path)}")
    return sha256_file(Path(path))


def load_own_splits(
    task: Task, data: Any, tokenizer: WordPieceTokenizer, max_seq_length: int, cache_dir: Path | None
) -> OwnSplits:
    """The training set and the dev set of an own task (``data`` a DataConfig)."""
    train_sha256 = _sha256_of(data.train)
    whole = load_own_file(task, data.train, data.format, tokenizer, max_seq_length, cache_dir, train_sha256)
    assert whole.labels is not None
    record: dict[str, Any] = {"train": str(data.train), "train_sha256": train_sha256}
    if data.dev is not None:
        dev_sha256 = _sha256_of(data.dev)
        dev = load_own_file(task, data.dev, data.format, tokenizer, max_seq_length, cache_dir, dev_sha256)
        record.update(dev=str(data.dev), dev_sha256=dev_sha256)
        return OwnSplits(whole, dev, record | {"train_examples": len(whole), "dev_examples": len(dev)})
    train_idx, dev_idx = dev_split_indices(task, whole.labels, data.dev_split, data.split_seed, str(data.train))
    record.update(
        dev_split=data.dev_split,
        split_seed=data.split_seed,
        stratified=not task.is_regression,
        train_examples=len(train_idx),
        dev_examples=len(dev_idx),
        dev_indices_sha256=hashlib.sha256(dev_idx.astype(np.int64).tobytes()).hexdigest(),
    )
    return OwnSplits(whole.subset(train_idx), whole.subset(dev_idx), record)


def load_own_split(
    task: Task, data: Any, split: str, tokenizer: WordPieceTokenizer, max_seq_length: int, cache_dir: Path | None
) -> TokenizedDataset:
    """One labelled split (train, dev or test) of an own task, as its recipe's ``data`` defines it."""
    if split == "test":
        if data.test is None:
            raise TaskError(f"task {task.name} has no test file (data.test); evaluate a file with --data FILE")
        return load_own_file(task, data.test, data.format, tokenizer, max_seq_length, cache_dir)
    if split not in OWN_SPLITS:
        raise TaskError(f"task {task.name} has splits {', '.join(OWN_SPLITS)}; not {split!r}")
    splits = load_own_splits(task, data, tokenizer, max_seq_length, cache_dir)
    return splits.train if split == "train" else splits.dev
