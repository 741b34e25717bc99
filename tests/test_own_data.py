"""Own tasks end to end: the user's CSV / TSV / JSON Lines files on every recipe kind and command.

Tiny model, small slices of the real TREC (JSON Lines) and ChnSentiCorp (headerless TSV)
files; every bad input of the own-data issue gets one line, exit 2 and nothing written.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import one_error_line, write_recipe_file
from zoo_core.cli.main import app
from zoo_core.data import own
from zoo_core.data.own import dev_split_indices, load_own_splits, read_own_file
from zoo_core.data.splits import resolve_task
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.recipes.bundled import BUNDLED_DIR
from zoo_core.recipes.loader import validate_recipe

REPO = Path(__file__).resolve().parents[1]
TREC = REPO / "data" / "trec" / "train.jsonl"
#: the first 40 rows of ChnSentiCorp's train.tsv (headerless: review text, then positive/negative)
CHNSENTICORP = Path(__file__).parent / "data" / "chnsenticorp-40.tsv"
TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TREC_TASK = {"name": "trec6", "text": "text", "label": "label"}


def zoo(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def trec_file(tmp_path: Path) -> Path:
    """240 real TREC questions, every coarse label among them (ABBR has 6)."""
    rows = [json.loads(line) for line in TREC.read_text(encoding="utf-8").splitlines()]
    abbr = [r for r in rows if r["label"] == "ABBR"][:6]
    chosen = abbr + [r for r in rows if r["label"] != "ABBR"][:234]
    path = tmp_path / "trec.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    return path


@pytest.fixture
def own_recipe(tmp_path: Path, tiny_model_dir: Path, trec_file: Path) -> Any:
    """``own_recipe(name=..., **sections)``: a tiny own-task fine-tune recipe file on ``trec_file``."""

    def write(name: str = "own", **changes: Any) -> Path:
        recipe: dict[str, Any] = {
            "kind": "finetune",
            "name": name,
            "task": dict(TREC_TASK),
            "model": str(tiny_model_dir),
            "data": {"train": str(trec_file), "dev_split": 0.25, "max_seq_length": 32},
            "train": {"max_steps": 6, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2},
            "eval": {"every_steps": 3, "batch_size": 32},
            "output_dir": str(tmp_path / "runs" / name),
        }
        return write_recipe_file(tmp_path / f"{name}.yaml", recipe, changes)

    return write


def test_glue_recipes_read_as_before() -> None:
    recipe = validate_recipe(yaml.safe_load((BUNDLED_DIR / "finetune_sst2.yaml").read_text()))
    assert recipe.task == "sst2" and recipe.data.dir == Path("data/glue/SST-2") and recipe.data.train is None
    assert recipe.model_dump(mode="json")["task"] == "sst2"


def test_an_own_task_defaults_to_a_tenth_of_train_as_dev(trec_file: Path) -> None:
    data = {"train": str(trec_file)}
    recipe = validate_recipe({"kind": "finetune", "name": "x", "task": TREC_TASK, "model": "m", "data": data})
    assert recipe.data.dev_split == 0.1 and recipe.task_name == "trec6"
    task = resolve_task(recipe.task, recipe.data)
    assert list(task.labels) == TREC_LABELS and task.metrics == ("accuracy", "macro_f1")


def test_numeric_labels_sort_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i % 11}\n" for i in range(33)), encoding="utf-8")
    assert own.discover_labels(path, "auto", "label") == [str(i) for i in range(11)]


def test_the_dev_split_is_stratified_seeded_and_disjoint() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    task = own.own_task("t", "classification", own.Columns("text", None, "label"), ["a", "b", "c"], None)
    train, dev = dev_split_indices(task, labels, 0.1, 7, "f")
    again = dev_split_indices(task, labels, 0.1, 7, "f")
    assert np.array_equal(train, again[0]) and np.array_equal(dev, again[1])
    assert set(train).isdisjoint(dev) and len(train) + len(dev) == 100
    assert Counter(labels[dev].tolist()) == {0: 5, 1: 3, 2: 2}
    other = dev_split_indices(task, labels, 0.1, 8, "f")[1]
    assert not np.array_equal(dev, other)


def test_tokenisation_in_chunks_equals_one_chunk(trec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = own.own_task("t", "classification", own.Columns("text", None, "label"), TREC_LABELS, None)
    tokenizer = WordPieceTokenizer(BUNDLED_VOCAB)
    whole = read_own_file(task, trec_file, "auto", tokenizer, 32)
    monkeypatch.setattr(own, "CHUNK", 7)
    chunked = read_own_file(task, trec_file, "auto", tokenizer, 32)
    assert np.array_equal(whole.ids, chunked.ids) and np.array_equal(whole.offsets, chunked.offsets)
    assert np.array_equal(whole.labels, chunked.labels) and len(whole) == 240


def test_quoted_csv_with_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        'question,kind\n"Who said ""hello, world""?",HUM\n"Where is\nParis?",LOC\nWhat is 2+2?,NUM\n',
        encoding="utf-8-sig",
    )
    task = own.own_task(
        "q", "classification", own.Columns("question", None, "kind"), ["HUM", "LOC", "NUM"], None
    )
    data = read_own_file(task, path, "auto", WordPieceTokenizer(BUNDLED_VOCAB), 32)
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2]
    tokenizer = WordPieceTokenizer(BUNDLED_VOCAB)
    expected, _ = tokenizer.encode_batch(['Who said "hello, world"?'], None, 32)
    assert data.ids[data.offsets[0] : data.offsets[1]].tolist() == expected[0].tolist()


def test_headerless_chinese_tsv_by_column_index(tmp_path: Path) -> None:
    path = CHNSENTICORP
    first = path.read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    config = validate_recipe(
        {
            "kind": "finetune",
            "name": "chn",
            "task": {"name": "chnsenticorp", "text": 0, "label": 1},
            "model": "m",
            "data": {"train": str(path)},
        }
    )
    task = resolve_task(config.task, config.data)
    assert task.labels == ("negative", "positive")
    splits = load_own_splits(task, config.data, WordPieceTokenizer(BUNDLED_VOCAB), 64, None)
    assert len(splits.train) + len(splits.dev) == 40 and len(splits.dev) == 4
    tokenizer = WordPieceTokenizer(BUNDLED_VOCAB)
    whole = read_own_file(task, path, "auto", tokenizer, 64)
    expected, _ = tokenizer.encode_batch([first], None, 64)
    assert whole.ids[: whole.offsets[1]].tolist() == expected[0].tolist() and len(expected[0]) > 10


def test_finetune_eval_predict_on_an_own_task(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    code, out, err = zoo("run", str(own_recipe()), "-q")
    assert code == 0, err
    best = tmp_path / "runs" / "own" / "best"
    config = json.loads((best / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(6)] == TREC_LABELS
    meta = json.loads((best / "zoo.json").read_text())
    assert meta["task"] == "trec6" and meta["task_spec"]["labels"] == TREC_LABELS
    split = meta["data_split"]
    assert split["dev_examples"] == 60 and split["train_examples"] == 180 and split["stratified"] is True

    code, out, err = zoo("eval", str(best), "--data", str(trec_file), "--plot", "cm.png")
    assert code == 0, err
    assert all(label in out for label in TREC_LABELS) and "precision" in out and "macro_f1" in out
    assert (tmp_path / "cm.png").stat().st_size > 1000
    code, out, _ = zoo("eval", str(best), "--json")
    record = json.loads(out)
    assert record["examples"] == 60 and [r["label"] for r in record["per_class"]] == TREC_LABELS
    assert sum(r["support"] for r in record["per_class"]) == 60

    code, _, err = zoo("report", str(tmp_path / "runs" / "own"), "--output", "report")
    assert code == 0, err
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Per-class results" in report and "| ABBR |" in report

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"text": "Who wrote Hamlet ?"}\n{"text": "How far is the moon ?"}\n', encoding="utf-8"
    )
    code, out, err = zoo("predict", str(best), str(questions))
    assert code == 0, err
    assert len(out.splitlines()) == 2 and set(out.split()) <= set(TREC_LABELS)
    code, out, err = zoo("predict", str(best), str(questions), "--probabilities")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == out.split() or all(r["label"] in TREC_LABELS for r in rows)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in rows)


def test_transformers_pipeline_names_the_labels(own_recipe: Any, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    assert zoo("run", str(own_recipe()), "-q")[0] == 0
    classify = transformers.pipeline("text-classification", model=str(tmp_path / "runs" / "own" / "best"))
    assert classify("Who wrote Hamlet ?")[0]["label"] in TREC_LABELS


def test_regression_from_csv(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("a,b,score\n" + "".join(f"sentence {i},other {i % 5},{i % 7 / 2}\n" for i in range(60)))
    recipe = {
        "kind": "finetune",
        "name": "reg",
        "task": {"name": "sim", "type": "regression", "text": "a", "text_pair": "b", "label": "score"},
        "model": str(tiny_model_dir),
        "data": {"train": str(path), "max_seq_length": 32},
        "train": {"max_steps": 3, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 1},
        "output_dir": "runs/reg",
    }
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(recipe))
    code, out, err = zoo("run", str(tmp_path / "reg.yaml"), "-q")
    assert code == 0, err
    assert "pearson" in out and "spearman" in out


def test_distill_and_width_on_an_own_task(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    teacher = own_recipe(name="teacher")
    common = {
        "task": dict(TREC_TASK),
        "teacher": str(teacher),
        "data": {"train": str(trec_file), "dev_split": 0.25, "max_seq_length": 32},
        "eval": {"every_steps": 2, "batch_size": 32},
    }
    stage_train = {"max_steps": 2, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 1}
    distill = {
        "kind": "distill",
        "name": "student",
        "student": {"model": str(tmp_path / "tiny-bert"), "num_hidden_layers": 1, "init": "teacher_layers"},
        "stages": [
            {"kind": "intermediate", "train": stage_train},
            {"kind": "prediction", "train": stage_train},
        ],
        "output_dir": "runs/student",
        **common,
    }
    width = {
        "kind": "width",
        "name": "dyna",
        "width": {"width_mult_list": [1.0, 0.5], "importance": {"examples": 16}},
        "train": stage_train,
        "output_dir": "runs/dyna",
        **common,
    }
    for name, recipe in (("student", distill), ("dyna", width)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        code, _, err = zoo("run", str(tmp_path / f"{name}.yaml"), "-q")
        assert code == 0, err
        meta = json.loads((tmp_path / "runs" / name / "best" / "zoo.json").read_text())
        assert meta["task_spec"]["labels"] == TREC_LABELS
    code, _, err = zoo("export", "runs/dyna", "--width-mult", "0.5", "-f", "portable")
    assert code == 0, err
    exported = json.loads((tmp_path / "runs" / "dyna" / "export" / "width-0.5" / "export.json").read_text())
    assert exported[0]["metrics"]["accuracy"] >= 0

    width["data"] = {**common["data"], "split_seed": 3}  # the teacher held out other examples
    width["output_dir"] = "runs/dyna2"
    (tmp_path / "dyna2.yaml").write_text(yaml.safe_dump(width))
    code, _, err = zoo("run", str(tmp_path / "dyna2.yaml"), "-q")
    assert code == 2 and "split" in err and "dev examples" in err
    assert not (tmp_path / "runs" / "dyna2").exists()


def _refused(recipe: Path, expected: str, tmp_path: Path, name: str = "own") -> None:
    """``zoo run recipe`` fails with one line containing ``expected``, exit 2, and writes no run."""
    line = one_error_line(CliRunner().invoke(app, ["run", str(recipe), "-q"]))
    assert expected in line, line
    assert not (tmp_path / "runs" / name).exists()


def test_a_text_column_that_does_not_exist(own_recipe: Any, tmp_path: Path) -> None:
    recipe = own_recipe(task={**TREC_TASK, "text": "question"})
    _refused(recipe, "no key 'question' (keys: text, label, fine)", tmp_path)


def test_an_empty_file(own_recipe: Any, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    _refused(
        own_recipe(data={"train": str(tmp_path / "empty.jsonl")}), "empty.jsonl: file is empty", tmp_path
    )


def test_a_blank_label(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    lines = trec_file.read_text().splitlines()
    lines[4] = json.dumps({"text": "What is it ?", "label": "  "})
    trec_file.write_text("\n".join(lines) + "\n")
    _refused(own_recipe(), f"{trec_file}:5: blank label", tmp_path)


def test_a_jsonl_line_that_is_not_json(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    lines = trec_file.read_text().splitlines()
    lines[9] = '{"text": "broken", "label": '
    trec_file.write_text("\n".join(lines) + "\n")
    _refused(own_recipe(), f"{trec_file}:10: not valid JSON", tmp_path)


def test_a_dev_label_absent_from_train(own_recipe: Any, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("text,label\n" + "a,x\nb,y\n" * 10)
    (tmp_path / "d.csv").write_text("text,label\na,x\nb,z\n")
    recipe = own_recipe(
        data={"train": str(tmp_path / "t.csv"), "dev": str(tmp_path / "d.csv"), "dev_split": None}
    )
    _refused(recipe, f"{tmp_path / 'd.csv'}:3: label 'z' is not one of task trec6's labels (x, y)", tmp_path)


def test_a_label_too_rare_for_a_stratified_split(own_recipe: Any, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("text,label\n" + "a,x\nb,y\n" * 10 + "c,rare\n")
    _refused(own_recipe(data={"train": str(tmp_path / "t.csv")}), "label 'rare' has 1 example", tmp_path)


def test_dev_and_dev_split_both_given(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    _refused(own_recipe(data={"dev": str(trec_file)}), "give data.dev or data.dev_split, not both", tmp_path)


def test_a_format_that_cannot_be_guessed(own_recipe: Any, tmp_path: Path, trec_file: Path) -> None:
    odd = tmp_path / "questions.txt"
    odd.write_bytes(trec_file.read_bytes())
    _refused(own_recipe(data={"train": str(odd)}), "cannot tell the format", tmp_path)
    recipe = own_recipe(name="fmt", data={"train": str(odd), "format": "jsonl"})
    assert zoo("validate", str(recipe))[0] == 0


def test_a_regression_label_that_is_not_a_number(own_recipe: Any, tmp_path: Path) -> None:
    (tmp_path / "s.tsv").write_text("text\tscore\n" + "a\t0.5\n" * 5 + "b\thigh\n")
    recipe = own_recipe(
        task={"name": "s", "type": "regression", "text": "text", "label": "score"},
        data={"train": str(tmp_path / "s.tsv")},
    )
    _refused(recipe, f"{tmp_path / 's.tsv'}:7: label 'high' is not a number", tmp_path)


def test_validate_reports_own_data_problems(own_recipe: Any) -> None:
    code, _, err = zoo("validate", str(own_recipe(task={**TREC_TASK, "label": "kind"})))
    assert code == 2 and "no key 'kind'" in err


def test_a_glue_checkpoint_evaluates_on_a_file_and_only_on_its_task(tiny_run: Path, sst2_dir: Path) -> None:
    code, out, err = zoo("eval", str(tiny_run / "best"), "--data", str(sst2_dir / "dev.tsv"), "--json")
    assert code == 0, err
    assert json.loads(out)["examples"] == 64
    code, _, err = zoo("eval", str(tiny_run / "best"), "--task", "cola")
    assert code == 2 and "fine-tuned on sst2, not cola" in err
