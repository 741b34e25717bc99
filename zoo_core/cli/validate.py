"""``zoo validate RECIPE...``: report every problem of every recipe at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zoo_core.cli.common import err, out, reports_errors
from zoo_core.errors import RecipeError, ZooError
from zoo_core.files import one_line


def data_problems(recipe: Any, source: str) -> list[str]:
    """Missing data files or folders; for an own task, also its columns and labels (reads data.train)."""
    from zoo_core.datasets import prepare_hint

    data = recipe.data
    if data.dir is not None:
        if Path(data.dir).is_dir():
            return []
        return [f"{source}: data.dir: directory {data.dir} does not exist{prepare_hint(data.dir)}"]
    files = {name: getattr(data, name) for name in ("train", "dev", "test")}
    missing = [
        f"{source}: data.{n}: file {p} does not exist{prepare_hint(p)}"
        for n, p in files.items()
        if p and not p.is_file()
    ]
    if missing or data.train is None:
        return missing
    from zoo_core.data.splits import resolve_task

    try:
        resolve_task(recipe.task, data)  # the format, the label column, the label set
    except ZooError as exc:
        return [f"{source}: data.train: {exc}"]
    return []


def semantic_problems(recipe: Any, source: str, backend: str | None) -> list[str]:
    """What a schema cannot see: the data folder, the model reference, the backend's options.

    Nothing is imported or loaded beyond a config.json; each problem is one line.
    """
    from zoo_core.models.catalog import get_entry, looks_like_path
    from zoo_core.options import validate_options
    from zoo_core.plugins import get_backend_spec, require_precisions
    from zoo_core.recipes.kinds import KINDS

    problems = data_problems(recipe, source)
    kind = KINDS[recipe.kind]
    model = kind.model_ref(recipe)
    if model is not None:
        try:
            if looks_like_path(model):
                from zoo_core.checkpoint import open_model_dir

                open_model_dir(Path(model))
            else:
                get_entry(model)
        except ZooError as exc:
            problems.append(f"{source}: {kind.model_field}: {exc}")
    if kind.teacher and not Path(recipe.teacher).is_dir():
        from zoo_core.recipes.bundled import find_recipe

        try:
            find_recipe(recipe.teacher)
        except ZooError:
            problems.append(
                f"{source}: teacher: {recipe.teacher} is neither a checkpoint directory nor a recipe"
            )
    if backend is not None:
        try:
            spec = get_backend_spec(backend)
            if recipe.device not in spec.devices:
                problems.append(
                    f"{source}: device: backend {backend!r} supports {', '.join(spec.devices)}, "
                    f"not {recipe.device!r}"
                )
            if kind.capability not in spec.capabilities:
                problems.append(
                    f"{source}: kind: backend {backend!r} cannot run {recipe.kind} recipes "
                    f"(it can: {', '.join(sorted(spec.capabilities)) or 'nothing'})"
                )
            validate_options(backend, spec.options, recipe.backend_options.get(backend, {}))
            require_precisions(backend, recipe.device, recipe)
        except RecipeError as exc:
            problems.extend(f"{source}: {p}" for p in exc.problems)
        except ZooError as exc:
            problems.append(f"{source}: {exc}")
    return problems


@reports_errors
def validate(
    recipes: Annotated[list[str], typer.Argument(help="recipe files or bundled recipe names")],
    backend: Annotated[
        str | None, typer.Option("--backend", "-b", help="also check device and backend_options for it")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="as for `zoo run`")] = None,
) -> None:
    """Check recipes without running them; every problem is reported, one line each."""
    from zoo_core.cpu_features import precision_warnings
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.loader import load_recipe

    problems: list[str] = []
    for ref in recipes:
        try:
            path = find_recipe(ref)
            recipe = load_recipe(path, overrides or [])
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        except (ZooError, OSError, ValueError) as exc:  # one bad file never stops the others
            problems.append(one_line(exc, 300) if isinstance(exc, ZooError) else f"{ref}: {one_line(exc)}")
            continue
        try:
            found = semantic_problems(recipe, str(path), backend)
        except (OSError, ValueError) as exc:  # e.g. a path too long for the file system
            found = [f"{path}: {one_line(exc)}"]
        problems.extend(found)
        if not found:
            out.print(f"{path}: ok ({recipe.kind}, task {recipe.task_name})")
            for warning in precision_warnings(recipe, backend):
                err.print(f"{path}: {warning}", markup=False, highlight=False)
    for problem in problems:
        err.print(f"error: {problem}", markup=False)
    if problems:
        raise typer.Exit(2)
