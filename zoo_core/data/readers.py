"""Readers for GLUE TSV files and plain-text prediction input.

GLUE files are tab-separated without CSV quoting (text contains ``"`` and ``'``), may
start with a UTF-8 byte-order mark (MRPC) and may lack a trailing newline (CoLA
dev).  Every problem is a one-line :class:`DataError` naming the file and the
1-based line number.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zoo_core.datasets import prepare_hint
from zoo_core.errors import DataError
from zoo_core.tasks.glue import SplitSpec, Task

Line = tuple[int, list[str]]  # (1-based line number, tab-separated fields)


@dataclass
class Examples:
    """Raw examples of one file: texts, and labels as indices (or float32 scores)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.text_a)


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 with any byte-order mark removed."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None
    return text.removeprefix("\ufeff")


def _lines(path: Path) -> Iterator[Line]:
    """Non-empty lines of ``path`` split on tabs, with their 1-based line numbers.

    Splits on ``\\n`` only (never on other Unicode line breaks inside text) and drops
    a trailing ``\\r``; lines holding only whitespace are skipped.
    """
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line.split("\t")


def _column_index(path: Path, header: Line | None, column: str | int) -> int:
    """The 0-based index of ``column`` (a header name, or already an index)."""
    if isinstance(column, int):
        return column
    if header is None:
        raise DataError(f"{path}: file is empty (expected a header with column '{column}')")
    number, names = header
    stripped = [name.strip() for name in names]
    if column not in stripped:
        raise DataError(f"{path}:{number}: header has no column '{column}' (columns: {', '.join(stripped)})")
    return stripped.index(column)


def _parse_label(task: Task, path: Path, number: int, raw: str) -> float | int:
    """A label string as a float score (regression) or an index into ``task.labels``."""
    value = raw.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not np.isfinite(score):
            raise DataError(f"{path}:{number}: score '{value}' is not a finite number for task {task.name}")
        return score
    try:
        return task.labels.index(value)
    except ValueError:
        allowed = ", ".join(task.labels)
        raise DataError(
            f"{path}:{number}: label '{value}' is not one of {allowed} for task {task.name}"
        ) from None


def _read_columns(task: Task, path: Path, spec: SplitSpec) -> Examples:
    """Examples from ``path`` laid out as ``spec`` describes."""
    lines = _lines(path)
    header = next(lines, None) if spec.has_header else None
    a_col = _column_index(path, header, spec.text_a)
    b_col = None if spec.text_b is None else _column_index(path, header, spec.text_b)
    label_col = None if spec.label is None else _column_index(path, header, spec.label)
    needed = 1 + max(c for c in (a_col, b_col, label_col) if c is not None)
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[float | int] = []
    for number, fields in lines:
        if len(fields) < needed:
            raise DataError(
                f"{path}:{number}: expected at least {needed} tab-separated columns, found {len(fields)}"
            )
        text_a.append(fields[a_col])
        if b_col is not None:
            text_b.append(fields[b_col])
        if label_col is not None:
            labels.append(_parse_label(task, path, number, fields[label_col]))
    label_array = None
    if label_col is not None:
        label_array = np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64)
    return Examples(text_a, text_b if b_col is not None else None, label_array, str(path))


def read_split(task: Task, data_dir: Path, split: str) -> Examples:
    """Read split ``split`` of ``task`` from ``data_dir`` (the task's own folder, e.g. ``glue/SST-2``).

    Labels become int64 indices into ``task.labels`` (float32 scores for regression),
    or None for an unlabelled split.
    """
    spec = task.split(split)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        expected = ", ".join(task.split(name).filename for name in ("train", *task.eval_splits))
        raise DataError(
            f"data directory {data_dir} does not exist (task {task.name} expects {expected} there)"
            + prepare_hint(data_dir)
        )
    return _read_columns(task, data_dir / spec.filename, spec)


def read_glue_file(task: Task, path: Path, layout: str = "dev") -> Examples:
    """Any file laid out as split ``layout`` of GLUE ``task`` (e.g. a relabelled copy of dev.tsv)."""
    return _read_columns(task, Path(path), task.split(layout))


def _text_columns_in(header: list[str], task: Task) -> SplitSpec | None:
    """A split layout of ``task`` whose text columns are all named in ``header``, if any."""
    names = {name.strip() for name in header}
    for spec in task.splits.values():
        text = [c for c in (spec.text_a, spec.text_b) if c is not None]
        if all(isinstance(c, str) and c in names for c in text):
            return replace(spec, has_header=True, label=None)
    return None


def _every_line(path: Path) -> list[tuple[int, str]]:
    """Every line of ``path``, blank ones too, with its 1-based number (a final newline ends the last line)."""
    lines = _read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [(number, line.removesuffix("\r")) for number, line in enumerate(lines, start=1)]


def read_unlabelled(task: Task, path: Path) -> Examples:
    """Prediction input for ``task``: a GLUE-style TSV with a header, or one example per line.

    If the file has more than one non-blank line and the first one is a TSV header
    naming the task's text columns (as in GLUE's ``test.tsv``), those columns are read.
    Otherwise every line is one example, so example N is line N: the text itself, or
    ``text_a<TAB>text_b`` for a sentence-pair task; a blank line is an example without
    text (``""``).  A single line is always an example, even one that reads like a header.
    Labels are never read.
    """
    path = Path(path)
    lines = _every_line(path)
    filled = list(islice((line.split("\t") for _, line in lines if line.strip()), 2))
    if len(filled) > 1 and (layout := _text_columns_in(filled[0], task)) is not None:
        return _read_columns(task, path, layout)
    pair = task.is_pair
    text_a: list[str] = []
    text_b: list[str] = []
    for number, line in lines:
        fields = line.split("\t")
        if not line.strip():
            text_a.append("")
            text_b.append("")
            continue
        if not pair:
            text_a.append(line)
            continue
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected text_a<TAB>text_b for pair task {task.name}, "
                f"found {len(fields)} tab-separated columns"
            )
        text_a.append(fields[0])
        text_b.append(fields[1])
    return Examples(text_a, text_b if pair else None, None, str(path))


def read_text_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped of surrounding whitespace."""
    path = Path(path)
    return [line.strip() for line in _read_text(path).split("\n") if line.strip()]
