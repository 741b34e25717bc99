"""Evaluation and prediction from a checkpoint: ``zoo eval`` and ``zoo predict``."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo_core.backend import Backend
from zoo_core.checkpoint import ModelDir, open_model_dir
from zoo_core.data.dataset import TokenizedDataset, default_cache_dir, tokenize_examples
from zoo_core.data.own import load_own_file
from zoo_core.data.readers import Examples, read_glue_file, read_unlabelled
from zoo_core.data.splits import load_split as load_task_split
from zoo_core.data.tables import KNOWN_SUFFIXES, guess_format, read_table
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import CheckpointError, DataError, TaskError
from zoo_core.plugins import create_backend
from zoo_core.recipes.common import DataConfig
from zoo_core.runners.common import check_lengths
from zoo_core.runners.evaluate import predict_dataset
from zoo_core.tasks import Task, compute_metrics, get_task
from zoo_core.tasks.own import task_from_record


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

    def sequence_length(self, given: int | None) -> int:
        """``given`` (``--max-seq-length``), else :attr:`max_seq_length`, if the model can embed it.

        A length beyond the model's ``max_position_embeddings`` is one line naming where
        it came from; so is a vocabulary larger than the model's (:func:`check_lengths`).
        """
        config = self.checkpoint.config
        if given is not None:
            length, what, hint = given, f"{self.checkpoint.path}: --max-seq-length", ""
        else:
            length = self.max_seq_length
            recorded = "max_seq_length" in self.checkpoint.meta.get("recipe", {}).get("data", {})
            source = "zoo.json's recipe.data.max_seq_length" if recorded else "the default max_seq_length"
            what = f"{self.checkpoint.path}: {source}"
            hint = f"; pass --max-seq-length {config.max_position_embeddings} or less"
        check_lengths(config, self.tokenizer, length, what, hint)
        return length


def checkpoint_task(checkpoint: ModelDir, task_name: str | None, task: Task | None = None) -> Task:
    """The task to use: ``task`` or ``task_name``, else the one recorded in zoo.json; labels must agree.

    An own task comes back from zoo.json's ``task_spec``.  A classifier whose label
    list differs from the task's (or a regression head for a classification task) is
    refused: its outputs would be read in the wrong order.  So is a checkpoint
    recorded for another task with the same labels (an SST-2 model on CoLA).
    """
    recorded = checkpoint.meta.get("task")
    spec = checkpoint.meta.get("task_spec")
    if task is None:
        if task_name is None and recorded is None:
            raise TaskError(f"{checkpoint.path}: no task recorded in zoo.json; pass --task")
        if spec is not None and task_name in (None, recorded):
            task = task_from_record(spec, str(checkpoint.path / "zoo.json"))
        else:
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
    if recorded is not None and recorded != task.name:
        raise CheckpointError(
            f"{checkpoint.path}: it was fine-tuned on {recorded}, not {task.name}; "
            "evaluate it on its own task, or on a file of that task with --data FILE"
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


def recorded_data(checkpoint: ModelDir, task: Task, data_dir: Path | None) -> DataConfig:
    """The data section of the checkpoint's recipe (zoo.json); ``data_dir`` replaces a GLUE folder."""
    recorded = checkpoint.meta.get("recipe", {}).get("data")
    if task.is_own:
        if data_dir is not None:
            raise TaskError(f"--data-dir is for GLUE tasks; own task {task.name} reads its recipe's files")
        if not isinstance(recorded, dict) or not recorded.get("train"):
            raise DataError(
                f"{checkpoint.path}: no data files recorded in zoo.json; evaluate with --data FILE"
            )
        return DataConfig.model_validate(recorded)
    return DataConfig(dir=data_dir_of(checkpoint, data_dir))


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
    """Labelled split ``split`` of the checkpoint's task, from ``data_dir`` or the recorded data."""
    length = loaded.sequence_length(max_seq_length)
    data = recorded_data(loaded.checkpoint, loaded.task, data_dir)
    dataset = load_task_split(loaded.task, data, split, loaded.tokenizer, length, default_cache_dir())
    if dataset.labels is None:
        raise TaskError(f"split {split!r} of task {loaded.task.name} has no labels to evaluate against")
    return dataset


def load_labelled_file(
    loaded: LoadedModel, path: Path, fmt: str = "auto", max_seq_length: int | None = None
) -> TokenizedDataset:
    """Any labelled file of the checkpoint's task: an own task's format, or a GLUE dev-style TSV."""
    length = loaded.sequence_length(max_seq_length)
    task = loaded.task
    if task.is_own:
        return load_own_file(task, path, fmt, loaded.tokenizer, length, default_cache_dir())
    examples = read_glue_file(task, Path(path), "dev")
    return tokenize_examples(examples, loaded.tokenizer, length)


def evaluate_checkpoint(
    loaded: LoadedModel,
    data_dir: Path | None,
    split: str,
    batch_size: int,
    max_seq_length: int | None = None,
    data_file: Path | None = None,
    data_format: str = "auto",
) -> Evaluation:
    """The task's metrics for the checkpoint on ``split`` (or on ``data_file``), with its logits."""
    if data_file is not None:
        dataset = load_labelled_file(loaded, data_file, data_format, max_seq_length)
    else:
        dataset = load_split(loaded, data_dir, split, max_seq_length)
    assert dataset.labels is not None
    logits = predict_dataset(loaded.backend, loaded.model, dataset, batch_size)
    metrics = compute_metrics(loaded.task, logits, dataset.labels)
    return Evaluation(metrics, dataset, logits)


@dataclass
class Evaluation:
    """What :func:`evaluate_checkpoint` measured: the metrics, the data and the model's logits."""

    metrics: dict[str, float]
    dataset: TokenizedDataset
    logits: np.ndarray


def read_prediction_input(task: Task, path: Path) -> Examples:
    """Prediction input: an own task's file (.csv, .tsv, .jsonl: its text columns), else as GLUE's."""
    path = Path(path)
    if task.is_own and task.columns is not None and path.suffix.lower() in KNOWN_SUFFIXES:
        columns = [task.columns.text] + (
            [task.columns.text_pair] if task.columns.text_pair is not None else []
        )
        table = read_table(path, guess_format(path)[0], columns)
        pair = None if task.columns.text_pair is None else table.columns[task.columns.text_pair]
        return Examples(
            table.columns[task.columns.text].to_pylist(),
            None if pair is None else pair.to_pylist(),
            None,
            str(path),
        )
    return read_unlabelled(task, path)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, K]`` logits (float64, numerically stable)."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def predict_file(
    loaded: LoadedModel,
    input_path: Path,
    batch_size: int,
    max_seq_length: int | None = None,
    probabilities: bool = False,
) -> list[str]:
    """One prediction per example of ``input_path``: a label name, or a score for regression.

    With ``probabilities`` each line is a JSON object: the label and every label's probability.
    An example without text (a blank line of a plain input) gets an empty line, so the
    output stays aligned with the input.
    """
    length = loaded.sequence_length(max_seq_length)
    examples = read_prediction_input(loaded.task, input_path)
    pairs = examples.text_b if examples.text_b is not None else [None] * len(examples)
    filled = [i for i, (a, b) in enumerate(zip(examples.text_a, pairs, strict=True)) if not _is_blank(a, b)]
    predicted = _predict_lines(
        loaded,
        replace(
            examples,
            text_a=[examples.text_a[i] for i in filled],
            text_b=None if examples.text_b is None else [examples.text_b[i] for i in filled],
        ),
        length,
        batch_size,
        probabilities,
    )
    lines = [""] * len(examples)
    for i, line in zip(filled, predicted, strict=True):
        lines[i] = line
    return lines


def _is_blank(text_a: object, text_b: object) -> bool:
    """True for an example whose texts are all empty, whitespace or missing: it gets an empty output line."""
    return all(t is None or (isinstance(t, str) and not t.strip()) for t in (text_a, text_b))


def _predict_lines(
    loaded: LoadedModel, examples: Examples, length: int, batch_size: int, probabilities: bool
) -> list[str]:
    """One output line per example of ``examples`` (see :func:`predict_file`)."""
    dataset = tokenize_examples(examples, loaded.tokenizer, length)
    if len(dataset) == 0:
        return []
    logits = predict_dataset(loaded.backend, loaded.model, dataset, batch_size)
    if loaded.task.is_regression:
        return [f"{score:.4f}" for score in logits[:, 0]]
    labels = loaded.task.labels
    chosen = np.argmax(logits, axis=1)
    if not probabilities:
        return [labels[i] for i in chosen]
    return [
        json.dumps(
            {
                "label": labels[i],
                "probabilities": {name: round(float(p), 6) for name, p in zip(labels, row, strict=True)},
            }
        )
        for i, row in zip(chosen, softmax(logits), strict=True)
    ]
