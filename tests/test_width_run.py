"""DynaBERT width runs end to end on tiny models: importance, per-width metrics, export, guards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.errors import DataError, ModelError, RecipeError
from zoo_core.models.config import BertConfig
from zoo_core.recipes.loader import validate_recipe
from zoo_core.recipes.width import ImportanceConfig
from zoo_core.runners.common import TaskData
from zoo_core.runners.width import check_widths, importance_split

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_width_run_measures_importance_and_every_width(width_recipe: Any, tmp_path: Path) -> None:
    result = run("run", str(width_recipe()))
    assert result.exit_code == 0, result.output
    assert "32 training examples held out of training" in result.stdout
    root = tmp_path / "runs" / "dyna"
    with np.load(root / "importance.npz") as saved:
        assert saved["heads"].shape == (2, 4) and saved["neurons"].shape == (2, 64)
        assert (saved["heads"] > 0).all()
    records = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert logged and all({"logits@0.75", "hidden@0.5"} <= set(r) for r in logged)
    evals = [r["eval"] for r in records if r.get("eval")]
    assert evals and all(set(e) == {"accuracy@1", "accuracy@0.75", "accuracy@0.5"} for e in evals)
    summary = json.loads((root / "result.json").read_text())
    assert summary["widths"]["0.5"] == {"heads": 2, "neurons": 32}
    assert summary["importance"]["held_out_of_training"] is True
    best = open_model_dir(root / "best")
    assert best.meta["kind"] == "width" and best.meta["width_mult_list"] == [1.0, 0.75, 0.5]
    assert best.meta["importance"]["source"] == "train_holdout"
    assert best.config.num_attention_heads == 4  # checkpoints hold the full, reordered model
    assert result.stdout.strip().splitlines()[-1].startswith("dev accuracy@1 ")


def test_width_export_slices_and_reproduces_the_reported_metric(
    width_recipe: Any, write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    assert run("run", str(width_recipe())).exit_code == 0
    assert run("run", str(write_recipe(name="later"))).exit_code == 0  # newer, but not a width run
    result = run("export", "--width-mult", "0.505", "--format", "portable", "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert "width 0.505 is the run's trained width 0.5" in result.stdout
    out = tmp_path / "runs" / "dyna" / "export" / "width-0.5"
    sliced = open_model_dir(out / "portable")
    assert (sliced.config.num_attention_heads, sliced.config.intermediate_size) == (2, 32)
    assert sliced.config.head_size == 8
    reported = json.loads((tmp_path / "runs" / "dyna" / "result.json").read_text())["final"]["accuracy@0.5"]
    exported = json.loads((out / "export.json").read_text())
    assert [e["metrics"]["accuracy"] for e in exported] == [reported, reported]
    assert f"zoo run reported accuracy@0.5 {reported:.4f}" in result.stdout


def test_transformers_loads_a_width_export(width_recipe: Any, tmp_path: Path) -> None:
    """The sliced config says ``pruned_heads`` (Hugging Face's way): stock transformers loads it."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    assert run("run", str(width_recipe())).exit_code == 0
    out = tmp_path / "runs" / "dyna" / "export" / "width-0.5"
    assert run("export", "--width-mult", "0.5", "--format", "portable", "-o", str(out)).exit_code == 0
    saved = json.loads((out / "portable" / "config.json").read_text())
    assert saved["num_attention_heads"] == 4 and saved["pruned_heads"] == {"0": [2, 3], "1": [2, 3]}
    assert saved["intermediate_size"] == 32 and "attention_head_size" not in saved
    zoo_model = open_model_dir(out / "portable")
    assert (zoo_model.config.num_attention_heads, zoo_model.config.head_size) == (2, 8)
    hf = transformers.BertForSequenceClassification.from_pretrained(str(out / "portable")).eval()
    assert hf.bert.encoder.layer[0].attention.self.query.weight.shape == (16, 32)
    from zoo_core.plugins import create_backend
    from zoo_core.testing.conformance.helpers import tiny_batch

    backend = create_backend("torch", "cpu", {})
    model = backend.build_model(zoo_model.config)
    backend.load_weights(model, zoo_model.load_weights())
    batch = tiny_batch(seed=3, batch_size=4, max_len=10)
    with torch.no_grad():
        logits = hf(
            input_ids=torch.as_tensor(batch.input_ids, dtype=torch.long),
            token_type_ids=torch.as_tensor(batch.token_type_ids, dtype=torch.long),
            attention_mask=torch.as_tensor(batch.attention_mask, dtype=torch.long),
        ).logits.numpy()
    np.testing.assert_allclose(logits, backend.predict(model, batch), rtol=0, atol=1e-4)


def test_pruned_heads_must_be_the_same_in_every_layer(tmp_path: Path) -> None:
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    d = config.to_hf_dict()
    d["pruned_heads"] = {"0": [1], "1": [0, 3]}
    with pytest.raises(ModelError, match="pruned_heads: every layer must lack the same number of heads"):
        BertConfig.from_hf_dict(d, "x/config.json")
    d["pruned_heads"] = {"0": [3, 1], "1": [0, 2]}  # which heads does not matter: the rest keep order
    assert BertConfig.from_hf_dict(d).num_attention_heads == 2


def test_dev_importance_is_recorded_as_not_held_out(width_recipe: Any, tmp_path: Path) -> None:
    recipe = width_recipe(width={"importance": {"source": "dev", "examples": 16}})
    result = run("run", str(recipe))
    assert result.exit_code == 0, result.output
    meta = open_model_dir(tmp_path / "runs" / "dyna" / "best").meta["importance"]
    assert meta["source"] == "dev" and meta["held_out_of_training"] is False and meta["examples"] == 16


def test_importance_split_holds_examples_out_of_training() -> None:
    lengths = np.arange(3, 23)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    train = TokenizedDataset(np.arange(offsets[-1]), np.zeros(offsets[-1], np.int64), offsets, np.arange(20))
    data = TaskData(train, {"dev": train})
    held, kept, _ = importance_split(data, ImportanceConfig(examples=5), seed=1)
    assert held.labels is not None and kept.labels is not None
    assert len(held) == 5 and len(kept) == 15
    assert sorted([*held.labels, *kept.labels]) == list(range(20))
    again, _, _ = importance_split(data, ImportanceConfig(examples=5), seed=1)
    assert again.labels is not None and list(again.labels) == list(held.labels)
    with pytest.raises(DataError, match=r"width\.importance\.examples"):
        importance_split(data, ImportanceConfig(examples=20), seed=1)


def test_widths_giving_the_same_sub_model_are_refused() -> None:
    config = BertConfig(num_attention_heads=12, intermediate_size=1536)
    check_widths(config, [1.0, 0.8333, 0.6667, 0.5])
    with pytest.raises(ModelError, match=r"0\.8333 and 0\.8334 both keep 10 heads"):
        check_widths(config, [0.8333, 0.8334])


@pytest.mark.parametrize(
    ("width", "match"),
    [
        ({"width_mult_list": [1.0, 1.5]}, "width 1.5 is not in"),
        ({"width_mult_list": [0.5, 0.5]}, "each width may appear once"),
        ({"width_mult_list": []}, "width_mult_list"),
        ({"loss_weights": {"attention": 1.0}}, "not a width loss"),
        ({"loss_weights": {"logits": 0.0, "hidden": 0.0}}, "non-zero weight"),
        ({"importance": {"source": "test"}}, "importance.source"),
    ],
)
def test_bad_width_sections_are_refused(width: dict[str, Any], match: str) -> None:
    recipe = {
        "kind": "width",
        "name": "w",
        "task": "sst2",
        "teacher": "t",
        "data": {"dir": "d"},
        "width": width,
    }
    with pytest.raises(RecipeError, match=match):
        validate_recipe(recipe, "w.yaml")


def test_a_width_run_needs_a_fine_tuned_teacher(width_recipe: Any, tiny_model_dir: Path) -> None:
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("classifier.")},
        str(tiny_model_dir / "model.safetensors"),
    )
    (tiny_model_dir / "zoo.json").unlink()
    result = run("run", str(width_recipe(teacher=str(tiny_model_dir))))
    assert result.exit_code == 2
    assert "the teacher has no classifier" in result.stderr
    assert "Traceback" not in result.output


def test_an_untrained_width_exports_with_a_warning(width_recipe: Any, tmp_path: Path) -> None:
    assert run("run", str(width_recipe())).exit_code == 0
    result = run("export", "--width-mult", "0.25", "--format", "portable")
    assert result.exit_code == 0, result.output
    assert "warning: width 0.25 was not trained" in result.stdout
    sliced = open_model_dir(tmp_path / "runs" / "dyna" / "export" / "width-0.25" / "portable")
    assert sliced.config.num_attention_heads == 1


def test_a_backend_without_the_width_capability_is_refused(
    width_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from zoo_core import plugins

    real = plugins.get_backend_spec

    def finetune_only(name: str, pm: Any = None) -> Any:
        return replace(real(name, pm), capabilities=frozenset({"finetune"}))

    monkeypatch.setattr(plugins, "get_backend_spec", finetune_only)
    result = run("run", str(width_recipe()))
    assert result.exit_code == 2
    assert "backend 'torch' cannot run width recipes (it can: finetune)" in result.stderr


def test_bench_exports_and_measures_every_width(width_recipe: Any, tmp_path: Path) -> None:
    assert run("run", str(width_recipe())).exit_code == 0
    root = tmp_path / "runs" / "dyna"
    quick = ("--batch-sizes", "2", "--seq-lens", "8", "--warmup", "0", "--repeats", "2", "--runtimes", "onnx")
    result = run("bench", str(root), "--widths", "1,0.5", *quick)
    assert result.exit_code == 0, result.output
    rows = json.loads((root / "bench.json").read_text())["rows"]
    assert [r["width"] for r in rows] == [1.0, 0.5]
    assert rows[1]["model_mb"] < rows[0]["model_mb"]
    assert (root / "export" / "width-0.5" / "onnx" / "model.onnx").is_file()
    assert not (root / "export" / "width-0.5" / "native").exists()  # only the runtimes asked for
