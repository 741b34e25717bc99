"""The portable checkpoint: zoo ↔ zoo, zoo → transformers, transformers → zoo, and its errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo_core.checkpoint import (
    FORMAT,
    META_FILE,
    WEIGHTS_FILE,
    open_model_dir,
    sha256_file,
    write_checkpoint,
)
from zoo_core.errors import CheckpointError, ModelError
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights, init_weights, normalize_names
from zoo_core.testing import reference_logits, regression_config, tiny_batch, tiny_config

META = {"recipe": {"task": "sst2", "seed": 7}, "metrics": {"accuracy": 0.5}}


def write(
    target: Path,
    config: BertConfig,
    weights: Weights | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Path:
    """A zoo checkpoint of ``config`` (seeded random weights unless given) with the bundled vocab."""
    if weights is None:
        weights = init_weights(config, seed)
    return write_checkpoint(target, config, weights, BUNDLED_VOCAB, META, **kwargs)


def leftovers(parent: Path) -> list[str]:
    """Temporary siblings an atomic write must not leave behind."""
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ---- zoo -> zoo ------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        tiny_config(labels=("neg", "neu", "pos")),
        regression_config(),
        tiny_config(attention_head_size=12, hidden_act="relu"),
    ],
    ids=["three-labels", "regression", "head-size-12"],
)
def test_round_trip_is_bit_exact(tmp_path: Path, config: BertConfig) -> None:
    weights = init_weights(config, seed=3)
    out = write(tmp_path / "ckpt", config, weights)
    assert out == tmp_path / "ckpt"
    mdir = open_model_dir(out)
    assert mdir.is_zoo_checkpoint
    assert mdir.config == config
    assert mdir.config.labels == config.labels
    assert mdir.config.problem_type == config.problem_type
    assert mdir.config.attention_head_size == config.attention_head_size
    assert mdir.vocab_path == out / "vocab.txt"
    assert mdir.vocab_path.read_bytes() == BUNDLED_VOCAB.read_bytes()
    assert mdir.lowercase is True
    loaded = mdir.load_weights()
    assert set(loaded) == set(weights)
    for name, value in weights.items():
        assert loaded[name].dtype == np.float32, name
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_zoo_json_records_format_sha_and_meta(tmp_path: Path) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == FORMAT
    assert meta["weights_sha256"] == sha256_file(out / WEIGHTS_FILE)
    assert len(meta["weights_sha256"]) == 64
    assert meta["recipe"] == META["recipe"]
    assert meta["metrics"] == META["metrics"]
    assert "created" in meta
    assert open_model_dir(out).meta == meta


def test_lowercase_flag_round_trips(tmp_path: Path) -> None:
    out = write(tmp_path / "cased", tiny_config(), lowercase=False)
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert open_model_dir(out).lowercase is False


def test_extra_callback_adds_files(tmp_path: Path) -> None:
    def extra(tmp: Path) -> None:
        (tmp / "README.md").write_text("hello\n")

    out = write(tmp_path / "ckpt", tiny_config(), extra=extra)
    assert (out / "README.md").read_text() == "hello\n"


def test_rewrite_replaces_existing_checkpoint(tmp_path: Path) -> None:
    config = tiny_config()
    write(tmp_path / "ckpt", config, seed=0)
    (tmp_path / "ckpt" / "stale.txt").write_text("from the first write")
    write(tmp_path / "ckpt", config, seed=1)
    assert not (tmp_path / "ckpt" / "stale.txt").exists()
    np.testing.assert_array_equal(
        open_model_dir(tmp_path / "ckpt").load_weights()["classifier.weight"],
        init_weights(config, 1)["classifier.weight"],
    )
    assert leftovers(tmp_path) == []


def test_write_rejects_weights_that_do_not_fit_config(tmp_path: Path) -> None:
    config = tiny_config()
    weights = init_weights(config, 0)
    weights["bert.encoder.layer.0.output.dense.weight"] = np.zeros((32, 65), np.float32)
    with pytest.raises(CheckpointError, match=r"bert\.encoder\.layer\.0\.output\.dense\.weight"):
        write(tmp_path / "ckpt", config, weights)
    assert not (tmp_path / "ckpt").exists()


# ---- zoo -> transformers -----------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [tiny_config(initializer_range=0.2, labels=("a", "b", "c")), regression_config(initializer_range=0.2)],
    ids=["classification", "regression"],
)
def test_transformers_loads_zoo_checkpoint(tmp_path: Path, config: BertConfig) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    weights = init_weights(config, seed=1)
    out = write(tmp_path / "ckpt", config, weights)

    model = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    assert model.config.num_labels == config.num_labels
    assert model.config.problem_type == config.problem_type
    assert [model.config.id2label[i] for i in range(config.num_labels)] == list(config.labels)

    batch = tiny_batch(seed=2, batch_size=5, max_len=16, vocab_size=config.vocab_size)
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(batch.input_ids),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
        ).logits.numpy()
    expected = reference_logits(weights, config, batch)
    assert logits.shape == (5, config.num_labels)
    assert np.abs(expected).max() > 0.1, "logits too small for the comparison to mean much"
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_transformers_tokenizer_loads_zoo_checkpoint(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    uncased = transformers.BertTokenizerFast.from_pretrained(write(tmp_path / "uncased", tiny_config()))
    assert uncased.vocab_size == 30522
    assert uncased("Hello world")["input_ids"] == [101, 7592, 2088, 102]

    cased_dir = write(tmp_path / "cased", tiny_config(), lowercase=False)
    cased = transformers.BertTokenizerFast.from_pretrained(cased_dir)
    assert cased.tokenize("Hello") != uncased.tokenize("Hello")
    assert uncased.tokenize("Hello") == ["hello"]


# ---- transformers -> zoo -----------------------------------------------------------
def test_opens_directory_saved_by_transformers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = tiny_config(labels=("x", "y", "z"))
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**config.to_hf_dict()))
    hf_dir = tmp_path / "hf"
    model.save_pretrained(hf_dir, safe_serialization=True)
    transformers.BertTokenizerFast(vocab_file=str(BUNDLED_VOCAB)).save_pretrained(hf_dir)

    mdir = open_model_dir(hf_dir)
    assert not mdir.is_zoo_checkpoint
    assert mdir.config == config
    assert mdir.lowercase is True
    loaded = mdir.load_weights()
    state = normalize_names({k: v.detach().numpy() for k, v in model.state_dict().items()})
    assert set(loaded) == set(state)
    for name, value in state.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


# ---- errors ------------------------------------------------------------------------
def truncate(path: Path) -> None:
    """Cut a file in half."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_one_line(exc: pytest.ExceptionInfo[Exception], names: Path | str) -> None:
    """The error is a single line that names ``names``."""
    message = str(exc.value)
    assert "\n" not in message
    assert str(names) in message


def test_truncated_weights_fail_sha_check(tmp_path: Path) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    truncate(out / WEIGHTS_FILE)
    mdir = open_model_dir(out)
    with pytest.raises(CheckpointError, match="sha256") as exc:
        mdir.load_weights()
    assert_one_line(exc, out / WEIGHTS_FILE)


def test_truncated_weights_without_zoo_json_are_unreadable(tmp_path: Path) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    (out / META_FILE).unlink()
    truncate(out / WEIGHTS_FILE)
    mdir = open_model_dir(out)
    assert not mdir.is_zoo_checkpoint
    with pytest.raises(CheckpointError, match="unreadable") as exc:
        mdir.load_weights()
    assert_one_line(exc, out / WEIGHTS_FILE)


def test_missing_weights_file(tmp_path: Path) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    (out / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE) as exc:
        open_model_dir(out).load_weights()
    assert_one_line(exc, out)


def test_weights_that_do_not_fit_config_json(tmp_path: Path) -> None:
    """config.json edited after writing (a larger vocabulary): the embeddings no longer fit it."""
    out = write(tmp_path / "ckpt", tiny_config())
    tiny_config(vocab_size=120).save(out)
    mdir = open_model_dir(out)
    assert mdir.config.vocab_size == 120
    with pytest.raises(CheckpointError, match=r"bert\.embeddings\.word_embeddings\.weight") as exc:
        mdir.load_weights()
    assert_one_line(exc, out / WEIGHTS_FILE)


@pytest.mark.parametrize("missing", ["vocab.txt", "config.json"])
def test_missing_vocab_or_config(tmp_path: Path, missing: str) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    (out / missing).unlink()
    with pytest.raises(ModelError, match=missing) as exc:
        open_model_dir(out)
    assert_one_line(exc, out / missing)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as exc:
        open_model_dir(tmp_path / "nowhere")
    assert_one_line(exc, tmp_path / "nowhere")


@pytest.mark.parametrize(
    "text", ["{not json", "", '["a list"]', '"a string"'], ids=["broken", "empty", "list", "string"]
)
def test_zoo_json_that_is_not_a_json_object(tmp_path: Path, text: str) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    (out / META_FILE).write_text(text)
    with pytest.raises(CheckpointError) as exc:
        open_model_dir(out)
    assert_one_line(exc, out / META_FILE)


def test_zoo_json_with_another_format(tmp_path: Path) -> None:
    out = write(tmp_path / "ckpt", tiny_config())
    (out / META_FILE).write_text(json.dumps({"format": "zoo-checkpoint/99"}))
    with pytest.raises(CheckpointError, match="zoo-checkpoint/99") as exc:
        open_model_dir(out)
    assert_one_line(exc, out / META_FILE)


# ---- atomicity ---------------------------------------------------------------------
def failing_extra(tmp: Path) -> None:
    """An ``extra`` callback that fails after the checkpoint's files are written."""
    assert (tmp / WEIGHTS_FILE).is_file()  # it runs inside the temporary directory
    raise RuntimeError("boom")


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_failed_write_leaves_no_directory(tmp_path: Path) -> None:
    parent = tmp_path / "models"
    with pytest.raises(RuntimeError, match="boom"):
        write(parent / "ckpt", tiny_config(), extra=failing_extra)
    assert not (parent / "ckpt").exists()
    assert leftovers(parent) == []
    assert list(parent.iterdir()) == []


def test_failed_write_keeps_existing_checkpoint(tmp_path: Path) -> None:
    config = tiny_config()
    out = write(tmp_path / "ckpt", config, seed=0)
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="boom"):
        write(tmp_path / "ckpt", config, seed=1, extra=failing_extra)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(
        open_model_dir(out).load_weights()["classifier.weight"], init_weights(config, 0)["classifier.weight"]
    )


def test_failed_rename_keeps_existing_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If moving the new directory into place fails, the old checkpoint must survive."""
    config = tiny_config()
    out = write(tmp_path / "ckpt", config, seed=0)
    before = snapshot(out)
    real_replace: Callable[..., None] = os.replace

    def replace(src: Any, dst: Any) -> None:
        if ".tmp-" in Path(src).name:
            raise OSError("simulated failure moving the new checkpoint into place")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        write(tmp_path / "ckpt", config, seed=1)
    monkeypatch.undo()
    assert out.is_dir()
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []
