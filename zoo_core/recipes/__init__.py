"""Recipes: pydantic models, one per kind, loaded from YAML with ``--set`` overrides."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from zoo_core.recipes.distill import DistillRecipe
from zoo_core.recipes.finetune import FinetuneRecipe
from zoo_core.recipes.kinds import KINDS
from zoo_core.recipes.width import WidthRecipe

#: every recipe kind of :data:`~zoo_core.recipes.kinds.KINDS`, told apart by its ``kind`` field
Recipe: Any = Annotated[
    Union[tuple(spec.recipe for spec in KINDS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]

__all__ = ["DistillRecipe", "FinetuneRecipe", "Recipe", "WidthRecipe"]
