"""The last readers moved onto the guarded loader, and small things users hit.

Run directories (a corrupt ``recipe.yaml``, ``result.json`` or ``metrics.jsonl``),
``zoo report``'s and ``zoo bench``'s JSON, ``zoo recipes`` on any ./recipes folder,
recipe names too long for the filesystem, the sequence length of ``zoo eval`` /
``zoo predict``, ``zoo predict``'s blank lines, one-line inputs and ``--output``, the
advice for another recipe's run directory, and ``zoo export`` of an unfinished run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import TINY, RecipeWriter, one_error_line
from zoo_core.checkpoint import write_checkpoint
from zoo_core.cli.main import app
from zoo_core.data.readers import read_unlabelled
from zoo_core.errors import RunDirError
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.models.weights import init_weights
from zoo_core.recipes.bundled import bundled_recipes
from zoo_core.runs import RunDir
from zoo_core.tasks import get_task

runner = CliRunner()

#: longest error line accepted (a message quotes at most ~80 characters of a value)
LONGEST_LINE = 400


def refused(args: list[Any], *expected: str) -> str:
    """Run zoo: exit code 2, exactly one short ``error:`` line containing every ``expected``."""
    line = one_error_line(runner.invoke(app, [str(a) for a in args]))
    assert len(line) < LONGEST_LINE, line
    for text in expected:
        assert text in line, line
    return line


def ok(args: list[Any]) -> tuple[str, str]:
    """Run zoo: exit code 0; its stdout and stderr."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout, result.stderr


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (to check nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---- A1: the sequence length of eval and predict -----------------------------------------
def short_model(tmp_path: Path, meta: dict[str, Any] | None = None) -> Path:
    """A TINY checkpoint that embeds at most 16 positions."""
    short = TINY.replace(max_position_embeddings=16)
    return write_checkpoint(tmp_path / "short", short, init_weights(short, 0), BUNDLED_VOCAB, meta or {})


def test_predict_refuses_a_length_beyond_the_positions(tmp_path: Path) -> None:
    model = short_model(tmp_path)
    text = tmp_path / "in.txt"
    text.write_text("a fine film\n")
    refused(
        ["predict", model, text, "--task", "sst2", "--max-seq-length", "32"],
        f"{model}: --max-seq-length 32 exceeds the model's max_position_embeddings 16",
    )


def test_a_recorded_length_beyond_the_positions_says_what_to_pass(tmp_path: Path, sst2_dir: Path) -> None:
    model = short_model(tmp_path, {"task": "sst2", "recipe": {"data": {"max_seq_length": 64}}})
    refused(
        ["eval", model, "--data-dir", sst2_dir],
        f"{model}: zoo.json's recipe.data.max_seq_length 64 exceeds the model's max_position_embeddings 16",
        "pass --max-seq-length 16 or less",
    )
    out, _ = ok(["eval", model, "--data-dir", sst2_dir, "--max-seq-length", "16", "--json"])
    assert json.loads(out)["examples"] == 64


# ---- A2: run directories -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"kind: finetune\nname: caf\xe9\n", "not UTF-8 text (byte 0xe9"),
        (b"- kind\n- name\n", "expected a YAML mapping (key: value lines), got a list"),
        (b"kind: [finetune\n", "not valid YAML"),
    ],
    ids=["non-utf8", "list", "broken"],
)
def test_a_corrupt_saved_recipe_is_one_line_even_with_restart(
    write_recipe: RecipeWriter, tmp_path: Path, content: bytes, expected: str
) -> None:
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_bytes(content)
    (run / "run.log").write_text("someone's run\n")
    before = tree(run)
    recipe = write_recipe()
    for extra in ([], ["--restart"]):
        refused(["run", recipe, "-q", *extra], f"{run / 'recipe.yaml'}", "corrupt", expected)
    assert tree(run) == before


@pytest.mark.parametrize(
    "content",
    [b'{"final": {"accuracy": 0.5}, "steps": 6', b'{"steps": "\xff"}', b"[1, 2]", b'{"final": [0.5]}'],
    ids=["torn", "non-utf8", "list", "final-list"],
)
def test_an_unreadable_result_is_not_finished(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "result.json").write_bytes(content)
    assert RunDir(tmp_path, writer=False).finished() is None
    (tmp_path / "result.json").write_text('{"final": {"accuracy": 0.5}, "steps": 6}')
    assert RunDir(tmp_path, writer=False).finished() == {"final": {"accuracy": 0.5}, "steps": 6}


def test_a_run_with_a_corrupt_result_finishes_again(tiny_run: Path, tmp_path: Path) -> None:
    (tiny_run / "result.json").write_bytes(b'{"final": {"accuracy": \xff}}')
    ok(["run", tmp_path / "tiny.yaml", "-q"])
    assert json.loads((tiny_run / "result.json").read_text(encoding="utf-8"))["steps"] == 6


def test_a_damaged_metrics_line_stops_a_resume_with_its_line(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    good = b'{"step": 1, "loss": 0.7}\n'
    metrics.write_bytes(good + b'{"step": 2, "loss": 0.\xff}\n{"step": 3, "lo')
    with pytest.raises(
        RunDirError, match=rf"^{re.escape(str(metrics))}:2: not UTF-8 text \(byte 0xff\).*--restart$"
    ):
        RunDir(tmp_path).trim_metrics(3, None)
    assert metrics.read_bytes().startswith(good + b'{"step": 2, "loss": 0.\xff}')  # nothing lost
    metrics.write_bytes(good + b'{"step": 2, "loss": 0.6}\n\x00\x00\x00')  # a torn tail is still dropped
    RunDir(tmp_path).trim_metrics(3, None)
    assert metrics.read_bytes() == good + b'{"step": 2, "loss": 0.6}\n'


# ---- A3: zoo report --------------------------------------------------------------------------
def finished_by_hand(run: Path) -> Path:
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"main_metric": "accuracy", "final": {"accuracy": 0.7}}))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5, "lr": 0.1}\n')
    return run


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("result.json", b"[0.7]", "result.json: unreadable: expected a JSON object, got a list"),
        ("result.json", b'{"final": "\xb2"}', "result.json:1: unreadable: not UTF-8 text (byte 0xb2"),
        ("per_class.json", b"42", "per_class.json: unreadable: expected a JSON object, got a number (42)"),
        ("bench.json", b"{" * 5, "bench.json: unreadable: not valid JSON"),
        ("metrics.jsonl", b'{"step": 1}\n{"step": 2, "loss": \xe9}\n', "metrics.jsonl:2: not UTF-8 text"),
    ],
    ids=["result-list", "result-non-utf8", "per-class-number", "bench-torn", "metrics-non-utf8"],
)
def test_report_reads_run_files_through_the_guarded_loader(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    run = finished_by_hand(tmp_path / "run")
    (run / name).write_bytes(content)
    refused(["report", run], str(run), expected)


def test_report_skips_metrics_records_it_cannot_use(tmp_path: Path) -> None:
    from zoo_core.report.history import load_history

    run = finished_by_hand(tmp_path / "run")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('[1, 2]\n{"step": "two", "loss": 1}\n')
        f.write('{"step": 2, "eval": ["bad"]}\n{"step": 3, "eval": {"a": 1}}\n')
    history = load_history(run)
    assert [r["step"] for r in history.train] == [1] and history.evals == [(3, {"a": 1.0})]


# ---- A4: zoo bench -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'[{"width_mult": 1}]', "expected a JSON object, got a list"),
        (b'{"backend": "\xff"}', "not UTF-8 text"),
        (b'{"vocab_size": -3}', "vocab_size: expected an integer >= 0, got a number (-3)"),
    ],
    ids=["list", "non-utf8", "negative-vocab"],
)
def test_bench_reads_export_json_through_the_guarded_loader(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    folder = tmp_path / "export" / "width-1"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "export.json").write_bytes(content)
    unreadable = "unreadable (export again with zoo export): "
    refused(["bench", folder], f"{folder / 'onnx' / 'export.json'}", unreadable, expected)


# ---- A5: zoo recipes and recipe names --------------------------------------------------------
def test_recipes_lists_any_recipes_folder(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "latin1.yaml").write_bytes(b"# caf\xe9 recipe [/b]\nkind: finetune\n")
    with (recipes / "huge.yaml").open("wb") as f:
        f.write(b"# a huge one\n")
        f.truncate(8 << 20)  # 8 MiB: only the first few KB are read
    (recipes / "folder.yaml").mkdir()
    (recipes / "long.yaml").write_text("# " + "word " * 2000 + "\n")
    out, err = ok(["recipes"])  # the table wraps cells at the console's width
    assert all(name in out for name in ("latin1", "huge", "folder", "long")) and not err
    summaries = {r.name: r.summary for r in bundled_recipes() if r.path.parent.resolve() == recipes}
    assert summaries["latin1"] == "caf\ufffd recipe [/b]" and summaries["huge"] == "a huge one"
    assert summaries["folder"] == "" and len(summaries["long"]) <= 160


@pytest.mark.parametrize("command", ["run", "validate", "plan"])
def test_a_recipe_name_too_long_for_the_filesystem(command: str) -> None:
    name = "x" * 300
    line = refused([command, name], "recipe file not found")
    assert "x" * 40 in line


# ---- B7-B9: zoo predict ----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_predict_will_not_overwrite_its_input(tiny_model_dir: Path, tmp_path: Path, how: str) -> None:
    text = tmp_path / "in.txt"
    text.write_text("a fine film\nawful\n")
    target = {"same": text, "relative": Path("sub/../in.txt"), "symlink": tmp_path / "link.txt"}.get(
        how, tmp_path / "hard.txt"
    )
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        target.symlink_to(text)
    elif how == "hardlink":
        target.hardlink_to(text)
    refused(
        ["predict", tiny_model_dir, text, "--task", "sst2", "-o", target],
        "is the input file",
        "choose another",
    )
    assert text.read_text() == "a fine film\nawful\n"


def test_predict_output_that_is_a_directory(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "in.txt"
    text.write_text("a fine film\n")
    refused(["predict", tiny_model_dir, text, "--task", "sst2", "-o", tmp_path], "is a directory")
    refused(
        ["predict", tiny_model_dir, text, "--task", "sst2", "-o", tmp_path / "no" / "p.txt"],
        "cannot write (No such file or directory)",
    )


@pytest.mark.parametrize("probabilities", [False, True])
def test_predict_keeps_blank_lines_in_place(
    tiny_model_dir: Path, tmp_path: Path, probabilities: bool
) -> None:
    text = tmp_path / "in.txt"
    text.write_text("a fine film\n\n  \t \nawful\r\n\n")
    flag = ["--probabilities"] if probabilities else []
    out, _ = ok(["predict", tiny_model_dir, text, "--task", "sst2", *flag])
    lines = out.split("\n")
    assert len(lines) == 6 and lines[5] == ""  # five input lines, five output lines
    assert [bool(line) for line in lines[:5]] == [True, False, False, True, False]
    if probabilities:
        assert json.loads(lines[0])["label"] in ("0", "1")


def test_blank_lines_of_pairs_keep_their_place(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("a man sings\ta person sings\n\nit rains\tit is dry\n")
    examples = read_unlabelled(get_task("rte"), path)
    assert (examples.text_a, examples.text_b) == (
        ["a man sings", "", "it rains"],
        ["a person sings", "", "it is dry"],
    )


@pytest.mark.parametrize(
    ("text", "count"),
    [("sentence\n", 1), ("sentence", 1), ("sentence\n\n", 2), ("index\tsentence\n0\tgood\n1\tbad\n", 2)],
    ids=["one-line", "no-newline", "one-line-and-a-blank", "glue-header"],
)
def test_a_single_line_is_an_example_even_if_it_looks_like_a_header(
    tiny_model_dir: Path, tmp_path: Path, text: str, count: int
) -> None:
    path = tmp_path / "in.tsv"
    path.write_text(text)
    out, _ = ok(["predict", tiny_model_dir, path, "--task", "sst2"])
    assert len(out.splitlines()) == count and out.splitlines()[0] in ("0", "1")


# ---- B10: another recipe's run directory ----------------------------------------------------
def test_another_recipes_run_is_not_replaced_and_restart_is_not_advised(
    write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"kind": "distill", "name": "other"}))
    (run / "result.json").write_text("{}")
    before = tree(run)
    for extra in ([], ["--restart"]):
        line = refused(
            ["run", write_recipe(), "-q", *extra],
            "holds a run of recipe 'other' ('distill')",
            "not even with --restart",
            "choose another output_dir",
        )
        assert "pass --restart" not in line
    assert tree(run) == before


# ---- B11: zoo export of an unfinished run ---------------------------------------------------
def test_export_warns_about_a_run_still_training(tiny_run: Path) -> None:
    step = json.loads((tiny_run / "best" / "zoo.json").read_text())["step"]
    warning = f"warning: {tiny_run} is still training (or was interrupted): exporting best/ from step {step}"
    out, _ = ok(["export", tiny_run, "-f", "portable"])
    assert "still training" not in out
    holder = RunDir(tiny_run)
    holder.lock()  # as a zoo run writing it would
    try:
        assert ok(["export", tiny_run, "-f", "portable"])[0].splitlines()[0] == warning
    finally:
        holder.release()
    (tiny_run / "result.json").unlink()  # interrupted: no result
    assert ok(["export", tiny_run / "best", "-f", "portable"])[0].splitlines()[0] == warning
    assert (tiny_run / "export" / "width-1" / "portable" / "model.safetensors").is_file()
