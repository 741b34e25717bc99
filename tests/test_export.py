"""``zoo export``: every format verified against the trained model, nothing unverified kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from zoo_torch.backend import TorchBackend

from zoo_core.cli.main import app

runner = CliRunner()


def test_export_all_formats_of_the_latest_run(tiny_run: Path) -> None:
    result = runner.invoke(app, ["export"])
    assert result.exit_code == 0, result.output
    out = tiny_run / "export" / "width-1"
    summary = json.loads((out / "export.json").read_text())
    assert [entry["format"] for entry in summary] == ["portable", "onnx", "native"]
    best = json.loads((tiny_run / "result.json").read_text())["best"]
    for entry in summary:
        assert entry["max_abs_diff"] <= 1e-4
        assert entry["metrics"]["accuracy"] == pytest.approx(best, abs=1e-12), entry["format"]
    assert (out / "onnx" / "model.onnx").is_file()
    assert (out / "portable" / "model.safetensors").is_file()
    assert json.loads((out / "portable" / "zoo.json").read_text())["width_mult"] == 1.0
    assert "portable" in result.stdout and "onnx" in result.stdout and "native" in result.stdout


def test_export_one_format_to_a_chosen_folder(tiny_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "onnx", "-o", str(tmp_path / "deploy")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["export.json", "onnx"]


def test_an_export_that_does_not_reproduce_the_model_is_not_kept(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TorchBackend.load_native

    def off_by_a_little(self: TorchBackend, path: Path):  # type: ignore[no-untyped-def]
        predict = original(self, path)
        return lambda batch: predict(batch) + np.float32(1e-3)

    monkeypatch.setattr(TorchBackend, "load_native", off_by_a_little)
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "native"])
    assert result.exit_code == 2
    assert "native export differs from the trained model by 1.00e-03" in result.stderr
    assert not (tiny_run / "export" / "width-1" / "native").exists()


def test_width_export_of_a_finetune_run_is_refused(tiny_run: Path) -> None:
    result = runner.invoke(app, ["export", str(tiny_run), "--width-mult", "0.5"])
    assert result.exit_code == 2
    assert "needs a DynaBERT width run" in result.stderr


def test_unknown_format_and_missing_runs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "-f", "tflite"])
    assert result.exit_code == 2 and "unknown format 'tflite'" in result.stderr
    result = runner.invoke(app, ["export"])
    assert result.exit_code == 2 and "no finished run under runs/" in result.stderr


def test_export_uses_the_backend_that_trained_the_run(tiny_run: Path) -> None:
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "portable"])
    assert result.exit_code == 0, result.output
    assert "with the torch backend" in result.stdout
    meta_path = tiny_run / "best" / "zoo.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "backend": "jax"}))
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "portable"])
    assert result.exit_code == 2 and "jax" in result.stderr
    result = runner.invoke(app, ["export", str(tiny_run), "-f", "portable", "--backend", "torch"])
    assert result.exit_code == 0, result.output
