"""``zoo export -f native --quantize int8``: the backend's own INT8 model, judged like ``onnx-int8``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zoo_core.backend import BackendSpec
from zoo_core.cli.main import app
from zoo_core.errors import BackendError
from zoo_core.plugins import get_backend_spec, require_native_int8

runner = CliRunner()


def test_native_int8_beside_the_fp32_native_export(tiny_run: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "deploy"
    args = ["export", str(tiny_run), "-f", "native", "-o", str(out), "--quantize", "int8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "export.json",
        "native",
        "native-int8",
        "onnx",
        "onnx-int8",
    ]
    assert sorted(p.name for p in (out / "native-int8").iterdir()) == ["export.json", "model-int8.pt"]
    summary = {entry["format"]: entry for entry in json.loads((out / "export.json").read_text())}
    fp32, quantized = summary["native"], summary["native-int8"]
    saved = json.loads((out / "native-int8" / "export.json").read_text())
    record = saved["quantization"]
    assert saved["export_format"] == "native-int8" and saved["backend"] == "torch"
    assert record["mode"] == "dynamic" and record["file"] == "model-int8.pt"
    assert record["fp32_metric"] == pytest.approx(fp32["metrics"]["accuracy"])
    drop = 100 * (fp32["metrics"]["accuracy"] - quantized["metrics"]["accuracy"])
    assert record["metric_drop_points"] == pytest.approx(drop) and drop <= record["max_drop_points"] == 1.0
    assert 0.0 <= quantized["agreement"] <= 1.0 and record["agreement_with_fp32"] == quantized["agreement"]
    assert quantized["max_abs_diff"] < 0.1
    assert result.stdout.count("agrees with fp32 on") == 2  # onnx-int8 and native-int8

    # TorchScript: loads with torch alone (no zoo code), any batch and length, close to the fp32 program
    module = torch.jit.load(str(out / "native-int8" / "model-int8.pt"))
    fp32_module = torch.export.load(out / "native" / "model.pt2").module()
    rng = np.random.default_rng(0)
    for shape in ((1, 5), (7, 19)):
        ids = torch.from_numpy(rng.integers(1, 100, size=shape))
        inputs = (ids, torch.zeros_like(ids), torch.ones_like(ids))
        with torch.no_grad():
            np.testing.assert_allclose(module(*inputs).numpy(), fp32_module(*inputs).numpy(), atol=0.1)
    quantized_layers = [
        m for m in module.modules() if m.original_name == "Linear" and "quantized" in str(m.code)
    ]
    assert quantized_layers, "the linear layers are the quantized kind"


def test_a_native_int8_model_that_loses_accuracy_is_not_kept(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The INT8 model predicts every dev example wrong: beyond --max-drop, so native-int8/ is not written."""
    from zoo_torch import export as torch_export

    from zoo_core.backend import Batch

    def always_wrong(path: Path):  # type: ignore[no-untyped-def]
        def predict(batch: Batch) -> np.ndarray:
            assert batch.labels is not None
            return np.eye(2, dtype=np.float32)[1 - batch.labels]

        return predict

    monkeypatch.setattr(torch_export, "load_native_int8", always_wrong)
    out = tmp_path / "deploy"
    args = ["export", str(tiny_run), "-f", "native", "-o", str(out), "--quantize", "int8"]
    result = runner.invoke(app, [*args, "--max-drop", "5"])
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: native-int8: accuracy ") and "below the fp32 native export's" in line, line
    assert line.endswith("(--max-drop 5); not kept"), line
    assert (out / "native" / "model.pt2").is_file(), "the verified fp32 export stays"
    assert sorted(p.name for p in out.iterdir()) == ["native", "onnx", "onnx-int8"]


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (
            "paddle",
            "Paddle 3.3 post-training quantization reads only pre-PIR programs; "
            "see plugins/paddle_backend/README.md INT8",
        ),
        ("mindspore", "MindSpore Golden Stick PTQ is Ascend-only"),
    ],
)
def test_backends_without_native_int8_say_why_in_one_line(backend: str, why: str) -> None:
    """From the registered spec alone: neither framework is imported."""
    try:
        spec = get_backend_spec(backend)
    except BackendError:
        pytest.skip(f"the {backend} plugin is not installed")
    assert "int8" not in spec.capabilities
    with pytest.raises(BackendError) as info:
        require_native_int8(backend)
    message = str(info.value)
    assert message.startswith(f"backend {backend!r} has no native INT8 export: {why}") and "\n" not in message
    require_native_int8("torch")  # torch has it


def test_native_int8_is_refused_before_any_work(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-f native --quantize int8 with a backend lacking the capability: one line, exit 2, nothing written."""
    from zoo_core import plugins

    lacking = BackendSpec(
        name="torch", factory=lambda *a: None, framework="torch", lacks={"int8": "not today"}
    )  # type: ignore[arg-type,return-value]
    monkeypatch.setattr(plugins, "get_backend_spec", lambda name: lacking)
    out = tmp_path / "deploy"
    result = runner.invoke(
        app, ["export", str(tiny_run), "-f", "native", "-o", str(out), "--quantize", "int8"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: backend 'torch' has no native INT8 export: not today"
    assert not out.exists() and "exporting" not in result.stdout


def test_the_default_formats_skip_native_int8_when_the_backend_lacks_it(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -f, --quantize int8 writes onnx-int8/ whatever the backend, and says why no native-int8/."""
    from zoo_core.runners import export

    def lacking(name: str) -> None:
        raise BackendError(f"backend {name!r} has no native INT8 export: not today")

    monkeypatch.setattr(export, "require_native_int8", lacking)
    out = tmp_path / "deploy"
    result = runner.invoke(app, ["export", str(tiny_run), "-o", str(out), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert "no native-int8/: backend 'torch' has no native INT8 export: not today" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "native", "onnx", "onnx-int8", "portable"]
