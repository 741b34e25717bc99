"""Every recipe kind, once: its recipe model, its runner, its plan and the capability it needs.

``zoo run``, ``zoo validate``, ``zoo plan`` and the recipe loader look a kind up here
instead of switching on its name, so a new kind is one entry in :data:`KINDS` plus its
own files (recipe model, runner, plan function).  Runners and plan functions are
named as ``"module:function"`` and imported when first used: loading a recipe (or
``zoo --help``) imports no runner, let alone a framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from zoo_core.recipes.common import RecipeBase
from zoo_core.recipes.distill import DistillRecipe
from zoo_core.recipes.finetune import FinetuneRecipe
from zoo_core.recipes.width import WidthRecipe

if TYPE_CHECKING:
    from rich.console import Console

    from zoo_core.backend import Backend
    from zoo_core.plan import MemoryPlan
    from zoo_core.runners.stage import RunResult
    from zoo_core.tasks import Task


class Runner(Protocol):
    """What runs a recipe of a kind end to end (``run_finetune``, ``run_distill``, ...)."""

    def __call__(
        self,
        recipe: Any,
        backend_name: str,
        *,
        console: Console,
        restart: bool = False,
        progress: bool = True,
        backend: Backend | None = None,
    ) -> RunResult: ...


class Planner(Protocol):
    """What estimates a recipe's training memory for ``zoo plan`` (see :mod:`zoo_core.plan`)."""

    def __call__(self, recipe: Any, task: Task) -> MemoryPlan: ...


@dataclass(frozen=True)
class KindSpec:
    """One recipe kind.

    ``runner`` and ``planner`` are ``"module:function"``; ``model_field`` is the dotted
    field naming a model that ``zoo validate`` resolves, if any, and ``teacher`` says
    whether the recipe has a ``teacher`` (a checkpoint directory or a recipe).
    """

    recipe: type[RecipeBase]
    runner: str
    planner: str
    #: what a backend must declare to run the kind (``BackendSpec.capabilities``)
    capability: str
    model_field: str | None = None
    teacher: bool = False

    def load_runner(self) -> Runner:
        """The runner, imported now."""
        runner: Runner = _load(self.runner)
        return runner

    def load_planner(self) -> Planner:
        """The plan function, imported now."""
        planner: Planner = _load(self.planner)
        return planner

    def model_ref(self, recipe: Any) -> str | None:
        """The model ``recipe`` names at :attr:`model_field`, or None if the kind names none."""
        if self.model_field is None:
            return None
        value: Any = recipe
        for part in self.model_field.split("."):
            value = getattr(value, part)
        return str(value)


def _load(ref: str) -> Any:
    """The object a ``"module:name"`` reference names."""
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


#: every recipe kind by its ``kind:`` value
KINDS: dict[str, KindSpec] = {
    "finetune": KindSpec(
        recipe=FinetuneRecipe,
        runner="zoo_core.runners.finetune:run_finetune",
        planner="zoo_core.plan:plan_finetune",
        capability="finetune",
        model_field="model",
    ),
    "distill": KindSpec(
        recipe=DistillRecipe,
        runner="zoo_core.runners.distill:run_distill",
        planner="zoo_core.plan:plan_distill",
        capability="distill",
        model_field="student.model",
        teacher=True,
    ),
    "width": KindSpec(
        recipe=WidthRecipe,
        runner="zoo_core.runners.width:run_width",
        planner="zoo_core.plan:plan_width",
        capability="width",
        teacher=True,
    ),
}
