"""The task registry: GLUE's file layouts, label sets and official metrics, and the Task type.

A :class:`Task` is either one of the nine GLUE tasks below or the user's own
(:mod:`zoo_core.tasks.own`), defined inline in a recipe by its columns and labels.

Every task knows where its files live inside a ``glue_data`` folder
(``<data_dir>/<dir_name>/<split file>``), which columns hold its text and label,
and which metrics the GLUE leaderboard reports for it.  Layouts follow the files
published by the GLUE benchmark (``download_glue_data.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo_core.errors import TaskError


@dataclass(frozen=True)
class SplitSpec:
    """Where one split's examples are and which columns hold them.

    Columns are header names when ``has_header`` is true, 0-based indices otherwise.
    ``label`` is None for unlabelled (test) splits; ``text_b`` is None for
    single-sentence tasks.
    """

    filename: str
    has_header: bool
    text_a: str | int
    text_b: str | int | None
    label: str | int | None


@dataclass(frozen=True)
class Columns:
    """Where an own task's text and label are: header names / JSON keys, or 0-based indices."""

    text: str | int
    text_pair: str | int | None
    label: str | int


@dataclass(frozen=True)
class Task:
    """One task: its name, label set, metrics and where its examples are.

    ``labels`` are the label strings exactly as they appear in the files, in index
    order (a regression task has the single pseudo-label ``"score"``).  A GLUE task
    has ``splits`` (file layouts inside its folder); an own task has ``columns``
    instead, and its files come from the recipe's ``data`` section.
    """

    name: str
    display_name: str
    dir_name: str
    labels: tuple[str, ...]
    is_regression: bool
    metrics: tuple[str, ...]
    main_metric: str
    splits: dict[str, SplitSpec] = field(hash=False)
    columns: Columns | None = None

    @property
    def is_own(self) -> bool:
        """True for a task defined in a recipe (not one of GLUE's)."""
        return self.columns is not None

    @property
    def is_pair(self) -> bool:
        """True when examples are sentence pairs (text and text_pair)."""
        if self.columns is not None:
            return self.columns.text_pair is not None
        return self.splits["train"].text_b is not None

    @property
    def num_labels(self) -> int:
        """Width of the model's output: 1 for regression, else the number of labels."""
        return 1 if self.is_regression else len(self.labels)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The splits a fine-tuning run evaluates on (MNLI: matched and mismatched dev)."""
        if self.columns is not None:
            return ("dev",)
        if "dev_matched" in self.splits:
            return ("dev_matched", "dev_mismatched")
        return ("dev",)

    def split(self, name: str) -> SplitSpec:
        """The layout of split ``name``; raises TaskError naming the valid splits."""
        if self.columns is not None:
            raise TaskError(
                f"task {self.name} is defined by its files (data.train, data.dev), not GLUE splits"
            )
        try:
            return self.splits[name]
        except KeyError:
            valid = ", ".join(self.splits)
            raise TaskError(f"task {self.name} has no split '{name}'; valid splits: {valid}") from None


def _standard_splits(
    text_a: str | int,
    text_b: str | int | None,
    label: str | int,
    *,
    has_header: bool = True,
    test: SplitSpec | None = None,
) -> dict[str, SplitSpec]:
    """train.tsv / dev.tsv with one layout; test.tsv with the same text columns, no label."""
    return {
        "train": SplitSpec("train.tsv", has_header, text_a, text_b, label),
        "dev": SplitSpec("dev.tsv", has_header, text_a, text_b, label),
        "test": test or SplitSpec("test.tsv", has_header, text_a, text_b, None),
    }


def _mnli_splits() -> dict[str, SplitSpec]:
    """MNLI's five files; ``dev`` and ``test`` alias the matched splits."""
    labelled = {
        name: SplitSpec(f"{name}.tsv", True, "sentence1", "sentence2", "gold_label")
        for name in ("train", "dev_matched", "dev_mismatched")
    }
    unlabelled = {
        name: SplitSpec(f"{name}.tsv", True, "sentence1", "sentence2", None)
        for name in ("test_matched", "test_mismatched")
    }
    splits = {**labelled, **unlabelled}
    splits["dev"] = splits["dev_matched"]
    splits["test"] = splits["test_matched"]
    return splits


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
_ACCURACY = ("accuracy",)


def _task(
    name: str,
    display_name: str,
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    splits: dict[str, SplitSpec],
    *,
    is_regression: bool = False,
) -> Task:
    """A task whose folder is named like its display name and whose main metric comes first."""
    return Task(name, display_name, display_name, labels, is_regression, metrics, metrics[0], splits)


def _build_tasks() -> dict[str, Task]:
    """The nine GLUE tasks, in the benchmark's usual order."""
    cola_test = SplitSpec("test.tsv", True, "sentence", None, None)
    tasks = [
        _task("sst2", "SST-2", _BINARY, _ACCURACY, _standard_splits("sentence", None, "label")),
        _task(
            "cola", "CoLA", _BINARY, ("mcc",), _standard_splits(3, None, 1, has_header=False, test=cola_test)
        ),
        _task(
            "mrpc", "MRPC", _BINARY, ("f1", "accuracy"), _standard_splits("#1 String", "#2 String", "Quality")
        ),
        _task(
            "stsb",
            "STS-B",
            ("score",),
            ("pearson", "spearman"),
            _standard_splits("sentence1", "sentence2", "score"),
            is_regression=True,
        ),
        _task(
            "qqp",
            "QQP",
            _BINARY,
            ("accuracy", "f1"),
            _standard_splits("question1", "question2", "is_duplicate"),
        ),
        _task("mnli", "MNLI", ("contradiction", "entailment", "neutral"), _ACCURACY, _mnli_splits()),
        _task("qnli", "QNLI", _ENTAILMENT, _ACCURACY, _standard_splits("question", "sentence", "label")),
        _task("rte", "RTE", _ENTAILMENT, _ACCURACY, _standard_splits("sentence1", "sentence2", "label")),
        _task("wnli", "WNLI", _BINARY, _ACCURACY, _standard_splits("sentence1", "sentence2", "label")),
    ]
    return {task.name: task for task in tasks}


#: every known task by canonical name
TASKS: dict[str, Task] = _build_tasks()


def get_task(name: str) -> Task:
    """The task called ``name``: case-insensitive, ``-`` and ``_`` ignored ("SST-2", "sts_b").

    Raises TaskError listing the known tasks when the name is unknown.
    """
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return TASKS[key]
    except KeyError:
        known = ", ".join(TASKS)
        raise TaskError(f"unknown task '{name}'; known tasks: {known}") from None
