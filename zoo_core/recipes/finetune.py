"""The fine-tune recipe: a pretrained encoder plus a new head, trained on one task."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from zoo_core.recipes.common import CheckpointConfig, DataConfig, EvalConfig, RecipeBase, TrainConfig


class FinetuneRecipe(RecipeBase):
    """``kind: finetune`` — train ``model`` on ``task`` with a fresh classifier."""

    kind: Literal["finetune"]
    model: str = Field(description="catalog name (see `zoo models`) or a Hugging Face-style BERT directory")
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoints: CheckpointConfig = Field(default_factory=CheckpointConfig)
