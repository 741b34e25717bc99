"""The distillation recipe (TinyBERT): a fine-tuned teacher, a smaller student, up to three stages."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from zoo_core.backend import INTERMEDIATE_LOSSES, PREDICTION_LOSSES
from zoo_core.recipes.common import CheckpointConfig, DataConfig, EvalConfig, RecipeBase, Section, TrainConfig

StageKind = Literal["general", "intermediate", "prediction"]
#: the order stages must come in (any of them may be left out)
STAGE_ORDER: tuple[StageKind, ...] = ("general", "intermediate", "prediction")


class StudentConfig(Section):
    """The student: an architecture and where its first weights come from."""

    model: str = Field(description="catalog name or model directory: the student's architecture")
    num_hidden_layers: int | None = Field(None, ge=1, description="override the architecture's layer count")
    init: Literal["random", "teacher_layers", "checkpoint"] = Field(
        "teacher_layers",
        description="random weights, a subset of the teacher's layers, or the weights in `model`",
    )
    teacher_layers: list[int] | None = Field(
        None, description="1-based teacher layers to copy for init: teacher_layers (default: evenly spaced)"
    )


class DistillStage(Section):
    """One stage: which losses, on which data, for how long."""

    kind: StageKind = Field(
        description="general (intermediate losses on unlabelled text), intermediate, or prediction"
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss_weights: dict[str, float] = Field(
        default_factory=dict,
        description="weights of embedding/hidden/attention (general, intermediate) or logits (prediction); "
        "each defaults to 1",
    )
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the prediction stage")
    text: Path | None = Field(
        None, description="general stage: a text file, one sentence per line (default: the task's sentences)"
    )

    @model_validator(mode="after")
    def _known_losses(self) -> DistillStage:
        allowed = PREDICTION_LOSSES if self.kind == "prediction" else INTERMEDIATE_LOSSES
        unknown = [k for k in self.loss_weights if k not in allowed]
        if unknown:
            raise ValueError(
                f"loss {unknown[0]!r} is not part of a {self.kind} stage (it has {', '.join(allowed)})"
            )
        if self.text is not None and self.kind != "general":
            raise ValueError("text is only for the general stage")
        return self

    def weights(self) -> dict[str, float]:
        """Every loss of the stage with its weight (1 unless the recipe says otherwise)."""
        names = PREDICTION_LOSSES if self.kind == "prediction" else INTERMEDIATE_LOSSES
        return {name: self.loss_weights.get(name, 1.0) for name in names}


class DistillRecipe(RecipeBase):
    """``kind: distill`` — TinyBERT: distil a fine-tuned teacher into a student, stage by stage."""

    kind: Literal["distill"]
    teacher: str = Field(
        description="a fine-tuned checkpoint directory, or a fine-tune recipe (file or bundled name) "
        "that is run first if it has not finished"
    )
    student: StudentConfig
    data: DataConfig
    layer_map: Literal["uniform"] | list[int] = Field(
        "uniform", description="1-based teacher layer for each student layer, or uniform"
    )
    stages: list[DistillStage] = Field(min_length=1)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _stage_order(self) -> DistillRecipe:
        kinds = [stage.kind for stage in self.stages]
        if kinds != sorted(kinds, key=STAGE_ORDER.index) or len(set(kinds)) != len(kinds):
            raise ValueError(f"stages must come in the order {', '.join(STAGE_ORDER)}, each at most once")
        return self
