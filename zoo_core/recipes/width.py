"""The width recipe (DynaBERT): one fine-tuned model trained to run at several widths."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from zoo_core.backend import WIDTH_LOSSES
from zoo_core.models.width import DEFAULT_WIDTHS
from zoo_core.recipes.common import CheckpointConfig, DataConfig, EvalConfig, RecipeBase, Section, TrainConfig


class ImportanceConfig(Section):
    """Where head and neuron importance is measured before the weights are reordered."""

    source: Literal["train_holdout", "dev"] = Field(
        "train_holdout",
        description="train_holdout: a slice of the training split, left out of training; "
        "dev: the dev split, as the reference code does (its dev metric is then no longer held out)",
    )
    examples: int = Field(
        2048, gt=0, description="examples to measure on (train_holdout: held out; dev: the first ones)"
    )
    batch_size: int = Field(32, gt=0)


class WidthConfig(Section):
    """The widths to train and how each learns from the full-width teacher."""

    width_mult_list: list[float] = Field(
        default_factory=lambda: list(DEFAULT_WIDTHS),
        min_length=1,
        description="widths trained every step, as fractions of the heads and FFN neurons",
    )
    loss_weights: dict[str, float] = Field(
        default_factory=lambda: {"logits": 1.0, "hidden": 0.1},
        description="weight of the soft cross-entropy on the teacher's logits and of the hidden-state MSE",
    )
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the logits loss")
    importance: ImportanceConfig = Field(default_factory=ImportanceConfig)

    @field_validator("width_mult_list")
    @classmethod
    def _widths(cls, value: list[float]) -> list[float]:
        bad = [w for w in value if not 0.0 < w <= 1.0]
        if bad:
            raise ValueError(f"width {bad[0]} is not in (0, 1]")
        if len(set(value)) != len(value):
            raise ValueError("each width may appear once")
        return value

    @field_validator("loss_weights")
    @classmethod
    def _losses(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = [k for k in value if k not in WIDTH_LOSSES]
        if unknown:
            raise ValueError(f"loss {unknown[0]!r} is not a width loss (they are {', '.join(WIDTH_LOSSES)})")
        if not any(value.get(k, 0.0) for k in WIDTH_LOSSES):
            raise ValueError("at least one loss needs a non-zero weight")
        return {k: float(value.get(k, 0.0)) for k in WIDTH_LOSSES}


class WidthRecipe(RecipeBase):
    """``kind: width`` — DynaBERT: reorder a fine-tuned model by importance, train it at every width."""

    kind: Literal["width"]
    teacher: str = Field(
        description="the fine-tuned checkpoint directory to start from (also the full-width teacher), "
        "or a fine-tune recipe (file or bundled name) that is run first if it has not finished"
    )
    data: DataConfig
    width: WidthConfig = Field(default_factory=WidthConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)
