"""Recipe models, YAML loading and ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zoo_core.errors import RecipeError
from zoo_core.recipes import FinetuneRecipe
from zoo_core.recipes.loader import apply_overrides, dump_recipe, load_recipe, parse_override, validate_recipe

MINIMAL = {"kind": "finetune", "name": "r", "task": "SST-2", "model": "minilm-l6-h384", "data": {"dir": "d"}}


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_defaults_and_normalised_task(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert isinstance(recipe, FinetuneRecipe)
    assert recipe.task == "sst2"
    assert recipe.train.batch_size == 32 and recipe.train.warmup_ratio == 0.1
    assert recipe.run_dir == Path("runs") / "r"
    assert recipe.device == "cpu"


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("train.batch_size=16", ["train", "batch_size"], 16),
        ("train.learning_rate=3e-5", ["train", "learning_rate"], 3e-5),
        ("train.max_grad_norm=null", ["train", "max_grad_norm"], None),
        ("eval.every_epoch=false", ["eval", "every_epoch"], False),
        ("name=with=equals", ["name"], "with=equals"),
        ("data.dir=data/glue/SST-2", ["data", "dir"], "data/glue/SST-2"),
    ],
)
def test_parse_override_reads_yaml_values(text: str, path: list[str], value: object) -> None:
    assert parse_override(text) == (path, value)


def test_overrides_create_sections_and_apply(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(tmp_path, MINIMAL),
        ["train.max_steps=10", "backend_options.torch.threads=1", "checkpoints.keep_last=5"],
    )
    assert recipe.train.max_steps == 10
    assert recipe.backend_options == {"torch": {"threads": 1}}
    assert recipe.checkpoints.keep_last == 5


def test_override_into_a_value_is_an_error() -> None:
    with pytest.raises(RecipeError, match="'name' is not a section"):
        apply_overrides(dict(MINIMAL), ["name.first=x"])


def test_override_indexes_lists() -> None:
    data = {"stages": [{"train": {"max_steps": 1}}, {"train": {}}]}
    apply_overrides(data, ["stages.1.train.max_steps=300", "stages.0.kind=prediction"])
    assert data["stages"] == [
        {"train": {"max_steps": 1}, "kind": "prediction"},
        {"train": {"max_steps": 300}},
    ]


@pytest.mark.parametrize("path", ["stages.2.train.max_steps=1", "stages.first.kind=x"])
def test_override_with_a_bad_list_index_is_an_error(path: str) -> None:
    with pytest.raises(RecipeError, match=r"stages is a list of 2; expected an index 0\.\.1"):
        apply_overrides({"stages": [{}, {}]}, [path])


def test_every_error_reported_with_line_and_path(tmp_path: Path) -> None:
    data = {**MINIMAL, "train": {"batch_size": 0, "learning_rate": "fast", "epochs": 3}, "colour": "red"}
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, data))
    problems = info.value.problems
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "train.batch_size: Input should be greater than 0" in joined
    assert "train.learning_rate: Input should be a valid number" in joined
    assert "train.epochs: unknown key" in joined
    assert "colour: unknown key" in joined
    assert all(p.startswith(f"{tmp_path / 'recipe.yaml'}:") for p in problems)


def test_unknown_and_missing_kind() -> None:
    with pytest.raises(RecipeError, match="unknown recipe kind 'prune'"):
        validate_recipe({**MINIMAL, "kind": "prune"})
    with pytest.raises(RecipeError, match="kind: missing"):
        validate_recipe({k: v for k, v in MINIMAL.items() if k != "kind"})


def test_length_is_required() -> None:
    with pytest.raises(RecipeError, match="give num_epochs or max_steps"):
        validate_recipe({**MINIMAL, "train": {"num_epochs": None}})


def test_a_recipe_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping"):
        load_recipe(path)


def test_dump_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL), ["train.learning_rate=1e-4"])
    again = validate_recipe(yaml.safe_load(dump_recipe(recipe)))
    assert again == recipe


def test_every_kind_names_its_recipe_model_runner_and_plan() -> None:
    from typing import get_args

    from zoo_core.recipes.kinds import KINDS

    for name, spec in KINDS.items():
        assert get_args(spec.recipe.model_fields["kind"].annotation) == (name,)
        assert callable(spec.load_runner()) and callable(spec.load_planner())
