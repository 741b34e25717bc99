"""The GLUE task registry: names, label sets, metrics and split layouts."""

from __future__ import annotations

import pytest

from zoo_core.errors import TaskError
from zoo_core.tasks import TASKS, SplitSpec, Task, get_task
from zoo_core.tasks.metrics import METRICS


def test_all_nine_glue_tasks_are_registered() -> None:
    assert list(TASKS) == ["sst2", "cola", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert all(isinstance(task, Task) and task.name == key for key, task in TASKS.items())


@pytest.mark.parametrize(
    ("alias", "name"),
    [("sst2", "sst2"), ("SST-2", "sst2"), ("sst-2", "sst2"), ("STS-B", "stsb"), ("sts-b", "stsb"),
     ("sts_b", "stsb"), ("CoLA", "cola"), ("MNLI", "mnli"), ("Rte", "rte")],
)  # fmt: skip
def test_get_task_normalises_names(alias: str, name: str) -> None:
    assert get_task(alias).name == name


def test_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'foo'; known tasks: sst2, cola, mrpc, .*wnli$"):
        get_task("foo")


def test_official_metrics_and_main_metric() -> None:
    expected = {
        "sst2": (("accuracy",), "accuracy"),
        "cola": (("mcc",), "mcc"),
        "mrpc": (("f1", "accuracy"), "f1"),
        "stsb": (("pearson", "spearman"), "pearson"),
        "qqp": (("accuracy", "f1"), "accuracy"),
        "mnli": (("accuracy",), "accuracy"),
        "qnli": (("accuracy",), "accuracy"),
        "rte": (("accuracy",), "accuracy"),
        "wnli": (("accuracy",), "accuracy"),
    }
    assert {name: (t.metrics, t.main_metric) for name, t in TASKS.items()} == expected
    assert all(metric in METRICS for task in TASKS.values() for metric in task.metrics)


def test_labels_names_and_num_labels() -> None:
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("rte").labels == ("entailment", "not_entailment")
    assert get_task("qnli").labels == ("entailment", "not_entailment")
    assert get_task("sst2").labels == ("0", "1")
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.labels == ("score",)
    assert get_task("mnli").num_labels == 3
    assert [t.dir_name for t in TASKS.values()] == [
        "SST-2", "CoLA", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI",
    ]  # fmt: skip
    assert get_task("stsb").display_name == "STS-B"


def test_every_task_has_train_dev_test_and_test_is_unlabelled() -> None:
    for task in TASKS.values():
        assert {"train", "dev", "test"} <= set(task.splits)
        assert task.split("test").label is None
        assert task.split("train").label is not None
        for split in task.eval_splits:
            assert task.split(split).label is not None


def test_mnli_splits() -> None:
    mnli = get_task("mnli")
    assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
    assert mnli.split("dev") == mnli.split("dev_matched")
    assert mnli.split("dev_mismatched").filename == "dev_mismatched.tsv"
    assert mnli.split("test_mismatched") == SplitSpec(
        "test_mismatched.tsv", True, "sentence1", "sentence2", None
    )
    assert get_task("sst2").eval_splits == ("dev",)


def test_cola_layout_has_no_header_but_its_test_file_does() -> None:
    cola = get_task("cola")
    assert cola.split("train") == SplitSpec("train.tsv", False, 3, None, 1)
    assert cola.split("test") == SplitSpec("test.tsv", True, "sentence", None, None)


def test_unknown_split_names_valid_splits() -> None:
    with pytest.raises(
        TaskError, match=r"task sst2 has no split 'validation'; valid splits: train, dev, test"
    ):
        get_task("sst2").split("validation")


def test_tasks_are_hashable_and_frozen() -> None:
    task = get_task("sst2")
    assert {task: 1}[get_task("SST-2")] == 1
    with pytest.raises(AttributeError):
        task.name = "x"  # type: ignore[misc]
