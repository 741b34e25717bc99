"""One entry point for a task's data, GLUE or own: which task a recipe means, and its splits.

GLUE tasks read their folder (``data.dir``, :func:`zoo_core.data.dataset.load_dataset`);
own tasks read the user's files (``data.train`` / ``data.dev`` / ``data.test``,
:mod:`zoo_core.data.own`).  Runners, ``zoo eval``, ``zoo export`` and ``zoo plan``
call only this module, so every command treats both kinds alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_core.data.dataset import TokenizedDataset, load_dataset
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import DataError
from zoo_core.tasks import Task, get_task


def resolve_task(task: Any, data: Any) -> Task:
    """The Task a recipe names: a GLUE name, or an own-task mapping (labels read from data.train if needed)."""
    if isinstance(task, str):
        return get_task(task)
    from zoo_core.data.own import resolve_own_task

    return resolve_own_task(task, data)


def load_split(
    task: Task,
    data: Any,
    split: str,
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    cache_dir: Path | None,
) -> TokenizedDataset:
    """Tokenised split ``split`` of ``task`` as the recipe's ``data`` section (a DataConfig) locates it."""
    if task.is_own:
        from zoo_core.data.own import load_own_split

        return load_own_split(task, data, split, tokenizer, max_seq_length, cache_dir)
    if data.dir is None:
        raise DataError(f"task {task.name}: no data directory; pass --data-dir")
    return load_dataset(task, Path(data.dir), split, tokenizer, max_seq_length, cache_dir)
