"""``zoo convert``: checkpoints between zoo, Hugging Face, torch and PaddleNLP formats, verified by logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.convert import check_batch, detect_source
from zoo_core.testing.reference import reference_logits

runner = CliRunner()
HAS_PADDLE = importlib.util.find_spec("zoo_paddle") is not None
HAS_MINDSPORE = importlib.util.find_spec("zoo_mindspore") is not None


def convert(*args: str) -> Result:
    return runner.invoke(app, ["convert", *args])


def test_torch_then_hf_round_trip_keeps_every_weight(tiny_run: Path, tmp_path: Path) -> None:
    result = convert(str(tiny_run), "--to", "torch", "-o", "t")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "config.json",
        "pytorch_model.bin",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    refused = convert("t", "--to", "hf", "-o", "h")
    assert refused.exit_code == 2 and "--trust-pickle" in refused.stderr
    assert not (tmp_path / "h").exists()
    result = convert("t/pytorch_model.bin", "--to", "hf", "-o", "h", "--trust-pickle")
    assert result.exit_code == 0, result.output
    source = open_model_dir(tiny_run / "best").load_weights()
    back = open_model_dir(tmp_path / "h").load_weights()
    assert set(back) == set(source)
    for name, value in source.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    assert not (tmp_path / "h" / "zoo.json").exists()


def test_the_torch_file_loads_in_transformers(tiny_run: Path, tmp_path: Path) -> None:
    import torch
    from transformers import BertForSequenceClassification

    assert convert(str(tiny_run), "--to", "torch", "-o", "t").exit_code == 0
    model = BertForSequenceClassification.from_pretrained(tmp_path / "t", use_safetensors=False).eval()
    best = open_model_dir(tiny_run / "best")
    batch = check_batch(best.config)
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(batch.input_ids),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
        ).logits.numpy()
    np.testing.assert_allclose(logits, reference_logits(best.load_weights(), best.config, batch), atol=1e-5)


@pytest.mark.skipif(not HAS_PADDLE, reason="zoo-paddle is not installed")
def test_paddle_round_trip(tiny_run: Path, tmp_path: Path) -> None:
    result = convert(str(tiny_run / "best"), "--to", "paddle")
    assert result.exit_code == 0, result.output
    out = tiny_run / "best-paddle"
    assert (out / "model_state.pdparams").is_file() and "logits match the source" in result.stdout
    result = convert(str(out), "--to", "hf", "-o", "h", "--trust-pickle")
    assert result.exit_code == 0, result.output
    source = open_model_dir(tiny_run / "best").load_weights()
    back = open_model_dir(tmp_path / "h").load_weights()
    for name, value in source.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.skipif(not HAS_MINDSPORE, reason="zoo-mindspore is not installed")
def test_mindspore_round_trip_needs_no_pickle_flag(tiny_run: Path, tmp_path: Path) -> None:
    result = convert(str(tiny_run), "--to", "mindspore", "-o", "ms")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ms" / "model.ckpt").is_file()
    result = convert("ms", "--to", "hf", "-o", "h")  # a .ckpt is protobuf, not a pickle
    assert result.exit_code == 0, result.output
    source = open_model_dir(tiny_run / "best").load_weights()
    back = open_model_dir(tmp_path / "h").load_weights()
    for name, value in source.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_a_backbone_without_classifier_gets_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    backbone = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    save_file(backbone, str(tiny_model_dir / "model.safetensors"))
    (tiny_model_dir / "zoo.json").unlink(missing_ok=True)
    result = convert(str(tiny_model_dir), "--to", "torch", "-o", "t")
    assert result.exit_code == 0, result.output
    assert "the source has no classifier: initialised (seed 0)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "onnx"], "--to 'onnx': expected one of hf, torch, paddle, mindspore"),
        (["--to", "hf", "-o", "."], "already exists"),
    ],
)
def test_bad_conversions_are_one_line_errors(tiny_run: Path, args: list[str], message: str) -> None:
    result = convert(str(tiny_run), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_sources_are_detected_by_their_files(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(Exception, match="no weights file"):
        detect_source(tmp_path / "m")
    (tmp_path / "m" / "model.ckpt").write_bytes(b"")
    (tmp_path / "m" / "vocab.txt").write_text("")
    assert detect_source(tmp_path / "m").kind == "mindspore"
    (tmp_path / "m" / "model_state.pdparams").write_bytes(b"")
    with pytest.raises(Exception, match="2 weights files"):
        detect_source(tmp_path / "m")
    assert detect_source(tmp_path / "m" / "model_state.pdparams").kind == "paddle"
    with pytest.raises(Exception, match="unknown weights file"):
        detect_source(tmp_path / "m" / "vocab.txt")
