"""TinyBERT distillation end to end on tiny models: teacher hand-off, stages, guards, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core.checkpoint import open_model_dir
from zoo_core.cli.main import app
from zoo_core.errors import RecipeError
from zoo_core.recipes.loader import validate_recipe

runner = CliRunner()
FAST = {"max_steps": 4, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 2}


@pytest.fixture
def distill_recipe(tmp_path: Path, write_recipe: RecipeWriter, sst2_dir: Path) -> Any:
    """``distill_recipe(**changes)``: a tiny distillation recipe whose teacher is a tiny fine-tune recipe."""
    teacher = write_recipe(name="teacher")

    def write(**changes: Any) -> Path:
        recipe: dict[str, Any] = {
            "kind": "distill",
            "name": "student",
            "task": "sst2",
            "teacher": str(teacher),
            "student": {
                "model": str(tmp_path / "tiny-bert"),
                "num_hidden_layers": 1,
                "init": "teacher_layers",
            },
            "data": {"dir": str(sst2_dir), "max_seq_length": 32},
            "stages": [
                {"kind": "intermediate", "train": FAST},
                {"kind": "prediction", "train": FAST, "temperature": 2.0},
            ],
            "eval": {"every_steps": 2, "batch_size": 32},
            "output_dir": str(tmp_path / "runs" / "student"),
        }
        recipe.update(changes)
        path = tmp_path / "distill.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    return write


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_distill_runs_the_teacher_first_then_every_stage(distill_recipe: Any, tmp_path: Path) -> None:
    result = run("run", str(distill_recipe()))
    assert result.exit_code == 0, result.output
    assert "the teacher's recipe" in result.stdout and "running it first" in result.stdout
    assert (tmp_path / "runs" / "teacher" / "result.json").is_file()
    root = tmp_path / "runs" / "student"
    stage1, stage2 = root / "stage-1-intermediate", root / "stage-2-prediction"
    intermediate = [json.loads(line) for line in (stage1 / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in intermediate if "loss" in r]
    assert logged and all({"embedding", "hidden", "attention"} <= set(r) for r in logged)
    assert all(r["eval"] == {} for r in intermediate if "eval" in r)
    prediction = [json.loads(line) for line in (stage2 / "metrics.jsonl").read_text().splitlines()]
    assert any("logits" in r for r in prediction) and any(r.get("eval") for r in prediction)
    summary = json.loads((root / "result.json").read_text())
    assert summary["teacher_metrics"]["accuracy"] > 0 and "accuracy" in summary["final"]
    assert summary["peak_memory_mb"] > 50
    student = open_model_dir(root / "best")
    assert student.config.num_hidden_layers == 1 and student.meta["kind"] == "distill"
    assert result.stdout.strip().splitlines()[-1].startswith("dev accuracy ")
    again = run("run", str(distill_recipe()))
    assert again.exit_code == 0 and "already holds this finished run" in again.stdout


def test_an_interrupted_distillation_resumes_in_its_stage(
    distill_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo_core.trainers import Training

    path = distill_recipe()
    assert run("run", str(path.parent / "teacher.yaml"), "-q").exit_code == 0
    original, calls = Training.step, {"n": 0}

    def step(self: Training, batch: Any, lr: float) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 7:  # stage 2's third step, after its step-2 checkpoint
            raise KeyboardInterrupt
        return original(self, batch, lr)

    with monkeypatch.context() as patch:
        patch.setattr(Training, "step", step)
        assert run("run", str(path), "-q").exit_code == 130
    result = run("run", str(path))
    assert result.exit_code == 0, result.output
    assert "stage-1-intermediate: finished earlier" in result.stdout
    assert "resuming from" in result.stdout and "step-0000002" in result.stdout
    summary = json.loads((path.parent / "runs" / "student" / "result.json").read_text())
    assert summary["steps"] == 4 and summary["resumed_from"] == 2


def test_a_teacher_without_a_classifier_is_refused(distill_recipe: Any, tiny_model_dir: Path) -> None:
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("classifier.")},
        str(tiny_model_dir / "model.safetensors"),
    )
    (tiny_model_dir / "zoo.json").unlink()
    result = run("run", str(distill_recipe(teacher=str(tiny_model_dir))))
    assert result.exit_code == 2
    assert "the teacher has no classifier" in result.stderr


def test_a_teacher_for_other_labels_is_refused(
    distill_recipe: Any, write_recipe: RecipeWriter, tmp_path: Path
) -> None:
    rte = tmp_path / "RTE"
    rte.mkdir()
    source = Path(__file__).parents[1] / "data" / "glue" / "RTE"
    for split in ("train", "dev"):
        lines = (source / f"{split}.tsv").read_text().splitlines(keepends=True)[:41]
        (rte / f"{split}.tsv").write_text("".join(lines))
    other = write_recipe(name="rte-teacher", task="rte", data={"dir": str(rte)})
    assert run("run", str(other), "-q").exit_code == 0
    result = run("run", str(distill_recipe(teacher=str(tmp_path / "runs" / "rte-teacher"))))
    assert result.exit_code == 2
    assert "the teacher was fine-tuned on rte, not sst2" in result.stderr


def test_a_teacher_recipe_for_another_task_is_refused(
    distill_recipe: Any, write_recipe: RecipeWriter
) -> None:
    cola = write_recipe(name="cola-teacher", task="cola")
    result = run("run", str(distill_recipe(teacher=str(cola))))
    assert result.exit_code == 2
    assert "fine-tunes on cola, not sst2" in result.stderr


def test_random_student_of_another_width(distill_recipe: Any) -> None:
    student = {"model": "bert-l2-h128", "init": "random"}
    refused = run("run", str(distill_recipe(student=student)))
    assert refused.exit_code == 2 and "head" in refused.stderr  # 2 heads against the teacher's 4
    stages = [
        {"kind": "intermediate", "train": FAST, "loss_weights": {"attention": 0.0}},
        {"kind": "prediction", "train": FAST},
    ]
    result = run("run", str(distill_recipe(student=student, stages=stages)), "--restart")
    assert result.exit_code == 0, result.output


MINIMAL: dict[str, Any] = {
    "kind": "distill",
    "name": "d",
    "task": "sst2",
    "teacher": "finetune_sst2",
    "student": {"model": "minilm-l6-h384", "num_hidden_layers": 3},
    "data": {"dir": "data/glue/SST-2"},
    "stages": [{"kind": "intermediate"}, {"kind": "prediction"}],
}


def test_recipe_defaults_and_errors() -> None:
    recipe = validate_recipe(MINIMAL)
    assert recipe.stages[0].weights() == {"embedding": 1.0, "hidden": 1.0, "attention": 1.0}
    assert recipe.stages[1].weights() == {"logits": 1.0}
    assert recipe.student.init == "teacher_layers" and recipe.layer_map == "uniform"
    with pytest.raises(RecipeError, match="stages must come in the order general, intermediate, prediction"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "prediction"}, {"kind": "intermediate"}]})
    with pytest.raises(RecipeError, match="loss 'logits' is not part of a intermediate stage"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "intermediate", "loss_weights": {"logits": 1}}]})
    with pytest.raises(RecipeError, match="stages: List should have at least 1 item"):
        validate_recipe({**MINIMAL, "stages": []})


def test_general_stage_on_a_text_file(distill_recipe: Any, tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the film is a delight .\n\nan utterly forgettable movie\nit rains in spring\n" * 8)
    stages = [
        {"kind": "general", "text": str(text), "train": {**FAST, "batch_size": 8}},
        {"kind": "prediction", "train": FAST},
    ]
    result = run("run", str(distill_recipe(stages=stages)))
    assert result.exit_code == 0, result.output
    general = tmp_path / "runs" / "student" / "stage-1-general"
    logged = [json.loads(line) for line in (general / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "hidden" in r] == [2, 4]


def test_a_teacher_whose_labels_differ_is_refused(distill_recipe: Any, tmp_path: Path) -> None:
    from tests.conftest import TINY
    from zoo_core.checkpoint import write_checkpoint
    from zoo_core.models.catalog import BUNDLED_VOCAB
    from zoo_core.models.weights import init_weights

    config = TINY.replace(labels=("neg", "pos"))
    teacher = write_checkpoint(tmp_path / "odd-teacher", config, init_weights(config, 0), BUNDLED_VOCAB, {})
    result = run("run", str(distill_recipe(teacher=str(teacher))))
    assert result.exit_code == 2
    assert "labels ['neg', 'pos'] do not match task sst2's ['0', '1']" in result.stderr
