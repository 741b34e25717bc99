"""Evaluation and prediction from a checkpoint: ``zoo eval`` and ``zoo predict``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import Backend
from zoo_core.checkpoint import ModelDir, open_model_dir
from zoo_core.data.dataset import TokenizedDataset, default_cache_dir, load_dataset, tokenize_examples
from zoo_core.data.readers import read_unlabelled
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import CheckpointError, DataError, TaskError
from zoo_core.plugins import create_backend
from zoo_core.runners.evaluate import evaluate_dataset, predict_dataset
from zoo_core.tasks import Task, get_task


@dataclass
class LoadedModel:
    """A checkpoint loaded on a backend, with its task and tokenizer."""

    checkpoint: ModelDir
    task: Task
    backend: Backend
    model: Any
    tokenizer: WordPieceTokenizer

    @property
    def max_seq_length(self) -> int:
        """The length the checkpoint was trained with (its recipe), else 128."""
        data = self.checkpoint.meta.get("recipe", {}).get("data", {})
        return int(data.get("max_seq_length", 128))


def checkpoint_task(checkpoint: ModelDir, task_name: str | None) -> Task:
    """The task to use: ``task_name``, else the one recorded in zoo.json; labels must agree.

    A classifier whose label list differs from the task's (or a regression head for
    a classification task) is refused: its outputs would be read in the wrong order.
    """
    recorded = checkpoint.meta.get("task")
    if task_name is None and recorded is None:
        raise TaskError(f"{checkpoint.path}: no task recorded in zoo.json; pass --task")
    task = get_task(task_name or str(recorded))
    config = checkpoint.config
    expected = ("score",) if task.is_regression else task.labels
    if config.is_regression != task.is_regression or (
        not task.is_regression and tuple(config.labels) != task.labels
    ):
        raise CheckpointError(
            f"{checkpoint.path}: its classifier's labels {list(config.labels)} do not match task "
            f"{task.name}'s {list(expected)}; was it fine-tuned on this task?"
        )
    return task


def load_checkpoint(
    path: Path | ModelDir,
    task_name: str | None,
    backend_name: str,
    device: str,
    options: dict[str, Any] | None = None,
) -> LoadedModel:
    """Open ``path`` (unless already open), check it against the task, and load it on the backend."""
    checkpoint = path if isinstance(path, ModelDir) else open_model_dir(path)
    task = checkpoint_task(checkpoint, task_name)
    weights = checkpoint.load_weights()
    tokenizer = WordPieceTokenizer(checkpoint.vocab_path, lowercase=checkpoint.lowercase)
    backend = create_backend(backend_name, device, options)  # type: ignore[arg-type]
    model = backend.build_model(checkpoint.config)
    backend.load_weights(model, weights)
    return LoadedModel(checkpoint, task, backend, model, tokenizer)


def data_dir_of(checkpoint: ModelDir, given: Path | None) -> Path:
    """``given``, else the data.dir of the recipe recorded in the checkpoint's zoo.json."""
    if given is not None:
        return given
    recorded = checkpoint.meta.get("recipe", {}).get("data", {}).get("dir")
    if not recorded:
        raise DataError(f"{checkpoint.path}: no data directory recorded in zoo.json; pass --data-dir")
    return Path(recorded)


def load_split(
    loaded: LoadedModel, data_dir: Path | None, split: str, max_seq_length: int | None = None
) -> TokenizedDataset:
    """Labelled split ``split`` of the checkpoint's task, from ``data_dir`` or the recorded one."""
    length = max_seq_length or loaded.max_seq_length
    directory = data_dir_of(loaded.checkpoint, data_dir)
    dataset = load_dataset(loaded.task, directory, split, loaded.tokenizer, length, default_cache_dir())
    if dataset.labels is None:
        raise TaskError(f"split {split!r} of task {loaded.task.name} has no labels to evaluate against")
    return dataset


def evaluate_checkpoint(
    loaded: LoadedModel, data_dir: Path | None, split: str, batch_size: int, max_seq_length: int | None = None
) -> tuple[dict[str, float], TokenizedDataset]:
    """The task's metrics for the checkpoint on ``split`` (of ``data_dir``, else the recorded data)."""
    dataset = load_split(loaded, data_dir, split, max_seq_length)
    metrics = evaluate_dataset(loaded.backend, loaded.model, loaded.task, dataset, batch_size)
    return metrics, dataset


def predict_file(
    loaded: LoadedModel, input_path: Path, batch_size: int, max_seq_length: int | None = None
) -> list[str]:
    """One prediction per example of ``input_path``: a label name, or a score for regression."""
    examples = read_unlabelled(loaded.task, input_path)
    dataset = tokenize_examples(examples, loaded.tokenizer, max_seq_length or loaded.max_seq_length)
    if len(dataset) == 0:
        return []
    logits = predict_dataset(loaded.backend, loaded.model, dataset, batch_size)
    if loaded.task.is_regression:
        return [f"{score:.4f}" for score in logits[:, 0]]
    return [loaded.task.labels[i] for i in np.argmax(logits, axis=1)]
