"""Recipes: pydantic models, one per kind, loaded from YAML with ``--set`` overrides."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from zoo_core.recipes.distill import DistillRecipe
from zoo_core.recipes.finetune import FinetuneRecipe
from zoo_core.recipes.width import WidthRecipe

#: every recipe kind, told apart by its ``kind`` field
Recipe = Annotated[Union[FinetuneRecipe, DistillRecipe, WidthRecipe], Field(discriminator="kind")]  # noqa: UP007

__all__ = ["DistillRecipe", "FinetuneRecipe", "Recipe", "WidthRecipe"]
