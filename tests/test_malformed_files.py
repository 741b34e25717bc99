"""Malformed and hostile files: one line on stderr naming the file, exit code 2, no traceback.

Every JSON and YAML file zoo reads goes through :mod:`zoo_core.files`; these tests feed
each entry point (``zoo validate``, ``run``, ``eval``, ``predict``, ``convert``) a broken
recipe, config.json, zoo.json, tokenizer_config.json or trainer_state.json.  Hostile
YAML (alias bombs, deep nesting, huge scalars and files) runs in a subprocess of its
own, which measures the command's time and peak-memory increase after its imports.
"""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import zoo_core.files
from tests.conftest import REPO, RecipeWriter, one_error_line
from zoo_core.cli.main import app

runner = CliRunner()

#: longest error line accepted (a message quotes at most ~80 characters of a value)
LONGEST_LINE = 400


def refused(args: list[Any], names: Path | str, *expected: str) -> str:
    """Run zoo: exit code 2, exactly one short ``error:`` line naming ``names`` and ``expected``."""
    line = one_error_line(runner.invoke(app, [str(a) for a in args]))
    assert str(names) in line, line
    assert len(line) < LONGEST_LINE + len(str(names)), line
    for text in expected:
        assert text in line, line
    return line


# ---- recipes ----------------------------------------------------------------------------
def test_non_utf8_recipe(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    text = recipe.read_bytes()
    recipe.write_bytes(text.replace(b"name: tiny", b"name: caf\xe9 tiny"))  # Latin-1, not UTF-8
    line = 1 + text[: text.index(b"name: tiny")].count(b"\n")
    refused(["run", recipe], f"{recipe}:{line}:", "not UTF-8 text (byte 0xe9")
    assert not (recipe.parent / "runs" / "tiny").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not UTF-8 text"),
        (b"kind: finetune\n\x00\x00\x00\x01\x02", "holds a NUL character"),
        (b"\xff\xfek\x00i\x00n\x00d\x00", "not UTF-8 text"),  # UTF-16
        (b"kind: finetune\nname: a\x07b\n", "unacceptable character #x0007"),
    ],
    ids=["png", "nul", "utf16", "control-character"],
)
def test_binary_recipe(tmp_path: Path, content: bytes, expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    refused(["validate", bad], bad, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "a recipe is a YAML mapping (key: value lines), got null"),
        ("- a\n- b\n", "got a list"),
        ("kind: finetune\n---\nkind: width\n", "not valid YAML (but found another document)"),
        ("kind: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
        ("kind: finetune\nname: [unclosed\n", "not valid YAML"),
        ("\ufeffkind: finetune\nname: [unclosed\n", "not valid YAML"),  # a BOM is fine, the rest is not
    ],
    ids=["empty", "list", "two-documents", "python-tag", "truncated", "bom"],
)
def test_recipe_that_is_not_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    refused(["run", bad], bad, expected)


def test_recipe_with_a_bom_is_read(write_recipe: RecipeWriter) -> None:
    recipe = write_recipe()
    recipe.write_bytes(b"\xef\xbb\xbf" + recipe.read_bytes())
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output


def test_unreadable_recipe(write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = write_recipe()

    def no_permission(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == recipe:  # tests run as root: simulate EACCES
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(zoo_core.files, "open", no_permission, raising=False)
    refused(["run", recipe], recipe, "cannot read (permission denied)")


def test_recipe_whose_name_holds_a_newline(tmp_path: Path) -> None:
    bad = tmp_path / "two\nlines.yaml"
    bad.write_bytes(b"kind: \xff\n")
    refused(["validate", bad], str(bad).replace("\n", "\\n"), "not UTF-8 text")


def test_recipe_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    refused(["validate", tmp_path / "dir.yaml"], "dir.yaml")


def test_validate_reports_every_file(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    good, good2 = write_recipe(name="good"), write_recipe(name="good2")
    bad = tmp_path / "bad-binary.yaml"
    bad.write_bytes(b"\x00\x01\x02\xff" * 64)
    result = runner.invoke(app, ["validate", str(good), str(bad), str(good2)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{good}: ok" in result.stdout and f"{good2}: ok" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), result.stderr


# ---- config.json ------------------------------------------------------------------------
Edit = Callable[[dict[str, Any]], Any]


def _set(**changes: Any) -> Edit:
    return lambda config: {**config, **changes}


CONFIG_CASES: dict[str, tuple[Edit | bytes, str]] = {
    "zero-heads": (_set(num_attention_heads=0), "num_attention_heads: expected an integer from 1"),
    "negative-heads": (_set(num_attention_heads=-4), "num_attention_heads: expected an integer from 1"),
    "a-list": (lambda config: [config], "expected a JSON object, got a list"),
    "null": (lambda config: None, "expected a JSON object, got null"),
    "non-utf8": (b'{"hidden_act": "g\xe9lu"}', "not UTF-8 text (byte 0xe9"),
    "truncated": (b'{"vocab_size": 30522, "hidden', "not valid JSON (Unterminated string"),
    "empty": (b"", "not valid JSON (Expecting value at line 1 column 1)"),
    "nan": (b'{"layer_norm_eps": NaN}', "NaN is not a JSON number"),
    "infinity": (b'{"layer_norm_eps": 1e999}', "layer_norm_eps: expected a number > 0, got a number (inf)"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    "id2label-keys": (_set(id2label={"neg": "0", "pos": "1"}), "id2label: key 'neg' is not a label id"),
    "id2label-gap": (_set(id2label={"0": "0", "2": "1"}), "id2label: label ids must be 0..1, got [0, 2]"),
    "id2label-list": (_set(id2label=["0", "1"]), "id2label: expected an object"),
    "num-labels": (_set(num_labels=3), "num_labels is 3 but id2label names 2 labels"),
    "max-positions": (_set(max_position_embeddings=1), "max_position_embeddings: expected an integer from 2"),
    "vocab-size": (_set(vocab_size=0), "vocab_size: expected an integer from 1"),
    "not-divisible": (
        _set(num_attention_heads=5),
        "hidden_size 32 is not divisible by num_attention_heads 5",
    ),
    "string-int": (
        _set(hidden_size="32"),
        "hidden_size: expected an integer from 1 to 2147483647, got a string",
    ),
    "float-int": (_set(num_hidden_layers=2.0), "num_hidden_layers: expected an integer"),
    "bool-int": (_set(num_hidden_layers=True), "num_hidden_layers: expected an integer"),
    "dropout": (_set(hidden_dropout_prob=1.5), "hidden_dropout_prob: expected a probability in [0, 1)"),
    "activation": (_set(hidden_act="x" * 10_000), "hidden_act 'xxxx"),
    "problem-type": (_set(problem_type="multi_label_classification"), "problem_type"),
    "pad-token": (_set(pad_token_id=40_000), "pad_token_id: 40000 is outside the vocabulary"),
    "huge-model": (_set(vocab_size=2**31 - 1, hidden_size=4096, num_attention_heads=4), "parameters"),
    "too-large": (b" " * (5 << 20) + b"{}", "too large (5.0 MiB, at most 4.0 MiB is read)"),
}


def _break_config(model_dir: Path, edit: Edit | bytes) -> Path:
    config = model_dir / "config.json"
    if isinstance(edit, bytes):
        config.write_bytes(edit)
    else:
        config.write_text(json.dumps(edit(json.loads(config.read_text()))))
    return config


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_json_in_eval(tiny_model_dir: Path, case: str) -> None:
    edit, expected = CONFIG_CASES[case]
    config = _break_config(tiny_model_dir, edit)
    refused(["eval", tiny_model_dir, "--task", "sst2"], config, expected)


def test_config_json_that_is_a_directory(tiny_model_dir: Path) -> None:
    config = tiny_model_dir / "config.json"
    config.unlink()
    config.mkdir()
    refused(["eval", tiny_model_dir, "--task", "sst2"], config, "is a directory, expected a file")


def test_unreadable_config_json(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_model_dir / "config.json"

    def no_permission(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == config:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(zoo_core.files, "open", no_permission, raising=False)
    refused(["eval", tiny_model_dir, "--task", "sst2"], config, "cannot read (permission denied)")


def test_bad_config_json_in_predict(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _break_config(tiny_model_dir, _set(num_attention_heads=0))
    (tmp_path / "input.txt").write_text("a fine film\n")
    refused(
        ["predict", tiny_model_dir, tmp_path / "input.txt", "--task", "sst2"], config, "num_attention_heads"
    )


def test_bad_config_json_in_run(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    config = _break_config(tiny_model_dir, lambda c: [c])
    refused(["run", write_recipe()], config, "expected a JSON object, got a list")


def test_bad_config_json_in_validate(write_recipe: RecipeWriter, tiny_model_dir: Path) -> None:
    config = _break_config(tiny_model_dir, b'{"vocab_size": 30522, "\xff')
    refused(["validate", write_recipe()], config, "model: ", "not UTF-8 text")


def test_bad_config_json_in_convert(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _break_config(tiny_model_dir, _set(id2label={"0": "neg", "one": "pos"}))
    refused(["convert", tiny_model_dir, "--to", "hf", "-o", tmp_path / "out"], config, "key 'one'")
    assert not (tmp_path / "out").exists()


def test_max_position_embeddings_shorter_than_the_sequences(tmp_path: Path, sst2_dir: Path) -> None:
    from tests.conftest import TINY
    from zoo_core.checkpoint import write_checkpoint
    from zoo_core.models.catalog import BUNDLED_VOCAB
    from zoo_core.models.weights import init_weights

    short = TINY.replace(max_position_embeddings=16)
    model = write_checkpoint(tmp_path / "short", short, init_weights(short, 0), BUNDLED_VOCAB, {})
    refused(["eval", model, "--task", "sst2", "--data-dir", sst2_dir, "--max-seq-length", "32"], "16")


# ---- zoo.json, tokenizer_config.json ----------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"format": "zoo-checkpoint/1", "task": "sst\xb2"}', "unreadable: not UTF-8 text (byte 0xb2"),
        (
            b'{"format": "zoo-checkpoint/1", "recipe": []}',
            "unreadable: recipe: expected an object, got a list",
        ),
        (
            b'{"format": "zoo-checkpoint/1", "recipe": {"data": {"max_seq_length": "64"}}}',
            "recipe.data.max_seq_length: expected an integer",
        ),
        (b'{"format": "zoo-checkpoint/1", "task": 2}', "task: expected a string, got a number (2)"),
        (b"null", "unreadable: expected a JSON object, got null"),
        (
            b'{"format": "zoo-checkpoint/1", "width_mult_list": [1, "wide"]}',
            "width_mult_list.1: expected a number",
        ),
    ],
    ids=["non-utf8", "recipe-list", "max-seq-length", "task-number", "null", "width-list"],
)
def test_bad_zoo_json(tiny_model_dir: Path, content: bytes, expected: str) -> None:
    (tiny_model_dir / "zoo.json").write_bytes(content)
    refused(["eval", tiny_model_dir, "--task", "sst2"], tiny_model_dir / "zoo.json", expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"do_lower_case": tr\xfce}', "not UTF-8 text (byte 0xfc"),
        (b'{"do_lower_case": "no"}', "do_lower_case: expected true or false, got a string ('no')"),
        (b'["do_lower_case"]', "expected a JSON object, got a list"),
    ],
    ids=["non-utf8", "string", "list"],
)
def test_bad_tokenizer_config(tiny_model_dir: Path, content: bytes, expected: str) -> None:
    (tiny_model_dir / "tokenizer_config.json").write_bytes(content)
    refused(["eval", tiny_model_dir, "--task", "sst2"], tiny_model_dir / "tokenizer_config.json", expected)


def test_load_tokenizer_refuses_a_bad_tokenizer_config(tiny_model_dir: Path) -> None:
    from zoo_core.data.tokenizer import load_tokenizer
    from zoo_core.errors import DataError

    (tiny_model_dir / "tokenizer_config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError, match=r"tokenizer_config\.json:1: not UTF-8 text"):
        load_tokenizer(tiny_model_dir)


# ---- trainer_state.json on resume -------------------------------------------------------
def test_corrupt_trainer_state_on_resume(write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo_core.trainers import Training

    recipe = write_recipe(train={"max_steps": 4}, eval={"every_steps": 4}, checkpoints={"save_steps": 2})
    original, calls = Training.step, {"n": 0}

    def step(self: Training, batch: Any, lr: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, after the step-2 checkpoint
        return original(self, batch, lr)

    with monkeypatch.context() as patch:
        patch.setattr(Training, "step", step)
        assert runner.invoke(app, ["run", str(recipe), "-q"]).exit_code == 130
    state = recipe.parent / "runs" / "tiny" / "checkpoints" / "step-0000002" / "trainer_state.json"
    assert state.is_file()
    for content, expected in [
        (b'{"step": 2, "epo', "not valid JSON"),
        (b'{"step": "\xff"}', "not UTF-8 text"),
        (b'{"step": -2, "epoch": 0}', "step: expected an integer >= 0, got a number (-2)"),
        (b'{"step": 2, "last_metrics": {"accuracy": "high"}}', "last_metrics.accuracy: expected a number"),
        (b"[2, 0, 0]", "expected a JSON object, got a list"),
    ]:
        state.write_bytes(content)
        refused(
            ["run", recipe, "-q"], state, "corrupt (delete this checkpoint, or run with --restart)", expected
        )


# ---- hostile YAML: bounded time and memory ----------------------------------------------
def _bomb_flow(levels: int = 9) -> str:
    """A billion-laughs value in flow style: 10**levels strings from ~100 nodes."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "[" + ", ".join(parts) + "]"


def _bomb_recipe() -> str:
    lines = ["kind: finetune", "task: sst2", "model: bert-l2-h128", "data: {dir: data/glue/SST-2}"]
    lines.append("x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines.append("name: *x9  # a free-text field: 10**10 strings once expanded")
    return "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    lines = ["kind: finetune", "m0: &m0 {" + ", ".join(f"k{j}: v" for j in range(10)) + "}"]
    for i in range(1, 10):
        lines.append(f"m{i}: &m{i} [" + ", ".join([f"{{<<: *m{i - 1}}}"] * 10) + "]")
    return "\n".join(lines) + "\n"


HOSTILE_YAML: dict[str, str] = {
    "alias-bomb": _bomb_recipe(),
    "alias-bomb-in-one-field": f"kind: finetune\nname: {_bomb_flow()}\n",
    "merge-key-bomb": _merge_bomb(),
    "self-alias": "kind: finetune\nname: &me [1, *me]\n",
    "deep-flow": "kind: finetune\nname: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep-block": "kind: finetune\n" + "".join(" " * i + f"k{i}:\n" for i in range(200)),
    "huge-scalar": "kind: finetune\nname: " + "x" * 1_000_000 + "\n",
    "many-values": "kind: finetune\nname: [" + ", ".join(["x"] * 300_000) + "]\n",
    "huge-file": "kind: finetune\n",  # made 100 MB (sparse) below
}
HOSTILE_EXPECTED = {
    "alias-bomb": "more than 10,000 values; its aliases (*name) repeat too much",
    "alias-bomb-in-one-field": "more than 10,000 values",
    "merge-key-bomb": "more than 10,000 values",
    "self-alias": "alias *me refers to itself",
    "deep-flow": "not valid YAML",
    "deep-block": "nested more than 32 levels deep",
    "huge-scalar": "a value of 1,000,000 characters (at most 4,096)",
    "many-values": "more than 10,000 values",
    "huge-file": "too large (100.0 MiB, at most 1.0 MiB is read)",
}

#: the measured process: import everything `zoo validate` needs (and validate nothing, to
#: load the recipe models), then time ``zoo validate ARGS...`` if ARGS are given; its
#: address space is capped 1 GiB above the imports, so a regression fails instead of swapping
MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from typer.testing import CliRunner
    from zoo_core.cli.main import app
    runner = CliRunner()
    runner.invoke(app, ["validate", "no-such-recipe.yaml"])  # imports the loader and pydantic models
    vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = vm + (1 << 30) if hard == resource.RLIM_INFINITY else min(vm + (1 << 30), hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))  # a regression fails instead of swapping
    report = {}
    if len(sys.argv) > 1:
        start = time.perf_counter()
        result = runner.invoke(app, ["validate", *sys.argv[1:]])
        report = {"code": result.exit_code, "stdout": result.stdout[:10000], "stderr": result.stderr[:10000],
                  "traceback": "Traceback" in result.output, "seconds": time.perf_counter() - start}
    print(json.dumps(report))
    """
)
#: runs MEASURE as its only child and adds the child's peak RSS (RUSAGE_CHILDREN, KiB)
WRAPPER = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    done = subprocess.run([sys.executable, "-c", *sys.argv[1:]], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["peak_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(report))
    """
)


def measure(*args: str) -> dict[str, Any]:
    """MEASURE's report for ``zoo validate ARGS`` (or for its imports alone), with its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, MEASURE, *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def baseline_peak_kb() -> int:
    """Peak RSS of the measured process when it validates nothing (its imports)."""
    return int(measure()["peak_kb"])


@pytest.mark.parametrize("case", list(HOSTILE_YAML))
def test_hostile_yaml_is_refused_quickly(tmp_path: Path, case: str, baseline_peak_kb: int) -> None:
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(HOSTILE_YAML[case], encoding="utf-8")
    if case == "huge-file":
        with open(bad, "r+b") as f:
            f.truncate(100 << 20)  # sparse: costs no disk
    report = measure(str(bad))
    assert report["code"] == 2 and not report["traceback"], report
    lines = report["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), report["stderr"][:1000]
    assert HOSTILE_EXPECTED[case] in lines[0], lines[0]
    assert len(lines[0]) < LONGEST_LINE + len(str(bad)), lines[0]
    assert report["seconds"] < 2.0, report
    assert report["peak_kb"] - baseline_peak_kb < 200 * 1024, (report, baseline_peak_kb)


def test_validate_reports_every_hostile_file(write_recipe: RecipeWriter, tmp_path: Path) -> None:
    good = write_recipe(name="good")
    files = []
    for name, text in HOSTILE_YAML.items():
        if name != "huge-file":
            files.append(tmp_path / f"{name}.yaml")
            files[-1].write_text(text, encoding="utf-8")
    report = measure(*map(str, files), str(good))
    assert report["code"] == 2 and not report["traceback"], report
    assert f"{good}: ok" in report["stdout"]
    lines = report["stderr"].splitlines()
    assert len(lines) == len(files), report["stderr"][:3000]
    for path, line in zip(files, lines, strict=True):
        assert line.startswith(f"error: {path}"), line
        assert len(line) < LONGEST_LINE + len(str(path)), line
    assert report["seconds"] < 2.0, report


def test_set_with_an_alias_bomb(write_recipe: RecipeWriter, baseline_peak_kb: int) -> None:
    report = measure(str(write_recipe()), "--set", f"name={_bomb_flow()}")
    assert report["code"] == 2 and not report["traceback"], report
    lines = report["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --set name="), report["stderr"][:1000]
    assert "more than 10,000 values" in lines[0] and len(lines[0]) < LONGEST_LINE, lines[0]
    assert report["seconds"] < 2.0, report
    assert report["peak_kb"] - baseline_peak_kb < 200 * 1024, (report, baseline_peak_kb)
