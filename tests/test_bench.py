"""``zoo bench``: every runtime of an export measured, widths of a run exported on demand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoo_core.cli.main import app
from zoo_core.runners.bench import BenchRow, format_table

runner = CliRunner()
QUICK = ["--batch-sizes", "1,2", "--seq-lens", "8", "--warmup", "0", "--repeats", "2", "--threads", "1"]


def test_bench_a_run_exports_and_measures_every_runtime(tiny_run: Path) -> None:
    result = runner.invoke(app, ["bench", str(tiny_run), *QUICK])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "export" / "width-1" / "onnx" / "model.onnx").is_file()
    rows = json.loads((tiny_run / "bench.json").read_text())["rows"]
    assert {(r["runtime"], r["batch_size"], r["seq_len"]) for r in rows} == {
        (runtime, b, 8) for runtime in ("onnxruntime", "torch native") for b in (1, 2)
    }
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] for r in rows)
    assert all(r["samples_per_s"] == pytest.approx(r["batch_size"] / r["median_ms"] * 1e3) for r in rows)
    assert "onnxruntime" in result.stdout and "torch native" in result.stdout


def test_bench_one_export_folder_and_one_runtime(tiny_run: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["export", str(tiny_run), "-f", "onnx"]).exit_code == 0
    folder = tiny_run / "export" / "width-1"
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(folder), "--runtimes", "onnx", "--json", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert [r["runtime"] for r in json.loads(out.read_text())["rows"]] == ["onnxruntime"] * 2


def test_bench_int8_beside_fp32_exports_what_is_missing(tiny_run: Path) -> None:
    result = runner.invoke(app, ["bench", str(tiny_run), "--runtimes", "onnx,onnx-int8", *QUICK])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "export" / "width-1" / "onnx-int8" / "model.onnx").is_file()
    rows = json.loads((tiny_run / "bench.json").read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["onnxruntime"] * 2 + ["onnxruntime-int8"] * 2
    assert rows[2]["model_mb"] < rows[0]["model_mb"]


def test_bench_native_int8_beside_native_exports_what_is_missing(tiny_run: Path) -> None:
    result = runner.invoke(app, ["bench", str(tiny_run), "--runtimes", "native,native-int8", *QUICK])
    assert result.exit_code == 0, result.output
    assert (tiny_run / "export" / "width-1" / "native-int8" / "model-int8.pt").is_file()
    rows = json.loads((tiny_run / "bench.json").read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["torch native"] * 2 + ["torch native-int8"] * 2
    assert rows[2]["metric"] is not None and rows[0]["metric"] is None  # the INT8 export's recorded metric


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "one"], "--batch-sizes 'one': expected comma-separated numbers"),
        (["--seq-lens", "0"], "--seq-lens '0': expected positive numbers"),
        (["--runtimes", "tensorrt"], "unknown runtime 'tensorrt'"),
        (["--seq-lens", "100000"], "exceeds the model's"),
    ],
)
def test_bad_bench_options_are_one_line_errors(tiny_run: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", str(tiny_run), "--repeats", "1", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_widths_need_a_run_and_missing_folders_are_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such export folder or run directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["bench", str(tmp_path / "empty"), "--widths", "0.5"])
    assert result.exit_code == 2 and "--widths needs a run directory" in result.stderr


def test_table_gives_latency_relative_to_width_one() -> None:
    rows = [
        BenchRow(1.0, "onnxruntime", 32, 64, 100.0, 110.0, 320.0, 90.0),
        BenchRow(0.5, "onnxruntime", 32, 64, 55.0, 60.0, 581.8, 50.0),
    ]
    lines = format_table(rows).splitlines()
    assert lines[1].split()[-2:] == ["1.00x", "90.0"] and lines[2].split()[-2:] == ["0.55x", "50.0"]
