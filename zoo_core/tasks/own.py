"""Own tasks: classification or regression defined in a recipe by columns and labels.

A recipe's ``task:`` is either a GLUE name or a mapping (see
:class:`zoo_core.recipes.common.OwnTaskConfig`).  :func:`own_task` turns such a
definition, once its label set is known, into the same :class:`Task` type GLUE
tasks use; :func:`task_record` / :func:`task_from_record` carry it through a
checkpoint's ``zoo.json``, so ``zoo eval`` and ``zoo predict`` know it later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo_core.errors import TaskError
from zoo_core.tasks.glue import Columns, Task

#: the metrics an own task reports when its recipe names none (the first selects best/)
DEFAULT_METRICS = {"classification": ("accuracy", "macro_f1"), "regression": ("pearson", "spearman")}


def own_task(
    name: str,
    type_: str,
    columns: Columns,
    labels: Sequence[str],
    metrics: Sequence[str] | None,
) -> Task:
    """An own task; ``labels`` in index order (ignored for regression, whose label is "score")."""
    regression = type_ == "regression"
    chosen = tuple(metrics or DEFAULT_METRICS[type_])
    if not regression and len(labels) < 2:
        raise TaskError(f"task {name}: a classification task needs at least 2 labels, found {list(labels)}")
    if "f1" in chosen and len(labels) != 2:
        raise TaskError(f"task {name}: metric f1 is binary; with {len(labels)} labels use macro_f1")
    return Task(
        name=name,
        display_name=name,
        dir_name="",
        labels=("score",) if regression else tuple(labels),
        is_regression=regression,
        metrics=chosen,
        main_metric=chosen[0],
        splits={},
        columns=columns,
    )


def task_record(task: Task) -> dict[str, Any] | None:
    """What zoo.json records of an own task (None for GLUE tasks, known by name)."""
    if task.columns is None:
        return None
    return {
        "name": task.name,
        "type": "regression" if task.is_regression else "classification",
        "text": task.columns.text,
        "text_pair": task.columns.text_pair,
        "label": task.columns.label,
        "labels": list(task.labels),
        "metrics": list(task.metrics),
    }


def task_from_record(record: Any, where: str) -> Task:
    """The own task a zoo.json ``task_spec`` describes; TaskError naming ``where`` if malformed."""
    try:
        columns = Columns(record["text"], record.get("text_pair"), record["label"])
        return own_task(
            str(record["name"]),
            str(record["type"]),
            columns,
            [str(label) for label in record["labels"]],
            [str(metric) for metric in record["metrics"]],
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise TaskError(f"{where}: malformed task_spec in zoo.json ({exc!r})") from None
