"""``zoo export --quantize int8``: onnxruntime's quantizer, judged by the dev metric; nothing else kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from zoo_core.cli.main import app
from zoo_core.runners import int8

runner = CliRunner()


def quantized_nodes(path: Path) -> dict[str, int]:
    """How many nodes of each op type the ONNX file at ``path`` has."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_dynamic_int8_beside_the_fp32_onnx(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = runner.invoke(
        app, ["export", str(tiny_run), "-f", "portable", "-o", str(out), "--quantize", "int8"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "onnx", "onnx-int8", "portable"]
    assert sorted(p.name for p in (out / "onnx-int8").iterdir()) == ["export.json", "model.onnx"]
    summary = {entry["format"]: entry for entry in json.loads((out / "export.json").read_text())}
    fp32, quantized = summary["onnx"], summary["onnx-int8"]
    record = json.loads((out / "onnx-int8" / "export.json").read_text())["quantization"]
    assert record["mode"] == "dynamic" and record["calibration_examples"] == 0
    assert record["fp32_metric"] == pytest.approx(fp32["metrics"]["accuracy"])
    drop = 100 * (fp32["metrics"]["accuracy"] - quantized["metrics"]["accuracy"])
    assert record["metric_drop_points"] == pytest.approx(drop) and drop <= 1.0
    assert 0.0 <= quantized["agreement"] <= 1.0 and record["agreement_with_fp32"] == quantized["agreement"]
    assert "agrees with fp32 on" in result.stdout
    nodes = quantized_nodes(out / "onnx-int8" / "model.onnx")
    # every MatMul with a weight operand and every Gemm (the linear layers) became an integer matmul; the
    # attention products (two activations), LayerNorm, GELU and Softmax did not
    fp32 = onnx.load(str(out / "onnx" / "model.onnx")).graph
    weights = {t.name for t in fp32.initializer}
    by_weight = sum(n.op_type == "MatMul" and n.input[1] in weights for n in fp32.node)
    fp32_nodes = quantized_nodes(out / "onnx" / "model.onnx")
    assert by_weight >= 6 * 2 and nodes["MatMulInteger"] == by_weight + fp32_nodes.get("Gemm", 0)
    assert nodes["MatMul"] == fp32_nodes["MatMul"] - by_weight
    assert nodes["LayerNormalization"] == fp32_nodes["LayerNormalization"]
    assert nodes["Softmax"] == fp32_nodes["Softmax"]


def test_static_int8_is_calibrated_on_training_examples(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    args = ["export", str(tiny_run), "-f", "onnx", "-o", str(out), "--quantize", "int8", "--calibrate", "40"]
    result = runner.invoke(app, [*args, "--max-drop", "100"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "onnx-int8" / "export.json").read_text())["quantization"]
    assert record["mode"] == "static" and record["calibration_examples"] == 40
    assert "QuantizeLinear" in quantized_nodes(out / "onnx-int8" / "model.onnx")


def test_an_int8_model_that_loses_accuracy_is_not_kept(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The INT8 model predicts the opposite class: far beyond --max-drop, so nothing is written."""
    from zoo_core.runners import export

    original = export.onnx_predictor

    def flipped_if_quantized(path: Path):  # type: ignore[no-untyped-def]
        predict = original(path)
        if path.parent.name.startswith(".onnx-int8"):
            return lambda batch: -predict(batch)
        return predict

    monkeypatch.setattr(export, "onnx_predictor", flipped_if_quantized)
    out = tmp_path / "deploy"
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "onnx", "-o", str(out), "--quantize", "int8"])
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: onnx-int8: accuracy ") and "points below the fp32 ONNX's" in line, line
    assert line.endswith("(--max-drop 1); not kept"), line
    assert (out / "onnx" / "model.onnx").is_file(), "the verified fp32 export stays"
    assert sorted(p.name for p in out.iterdir()) == ["onnx"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--quantize", "int4"], "--quantize 'int4': expected int8"),
        (["--calibrate", "8"], "--calibrate and --max-drop need --quantize int8"),
    ],
)
def test_bad_quantize_options(tiny_run: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["export", str(tiny_run), *args])
    assert result.exit_code == 2
    assert expected in result.stderr


def test_calibration_takes_a_seeded_sample_of_the_training_split(tiny_run: Path) -> None:
    from zoo_core.runners.inference import load_checkpoint, load_split

    loaded = load_checkpoint(tiny_run / "best", None, "torch", "cpu")
    train = load_split(loaded, None, "train")
    feeds = list(int8.calibration_feeds(train, 40, seed=0))
    assert sum(len(f["input_ids"]) for f in feeds) == 40
    assert all(f["input_ids"].dtype == np.int64 and len(f["input_ids"]) <= 32 for f in feeds)
    again = list(int8.calibration_feeds(train, 40, seed=0))
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(feeds, again, strict=True))
    assert sum(len(f["input_ids"]) for f in int8.calibration_feeds(train, 10**6, seed=0)) == len(train)
