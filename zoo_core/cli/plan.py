"""``zoo plan``: what a recipe will cost in parameters and memory, before training."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo_core.cli.common import err, out, reports_errors


@reports_errors
def plan(
    recipe: Annotated[str, typer.Argument(help="a recipe file, or the name of a bundled recipe")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a field, as for zoo run (repeatable)")
    ] = None,
) -> None:
    """Estimate RECIPE's parameter count and training memory (fp32, AdamW) without training.

    The parts: weights, gradients, optimizer states, the teacher, and the activations
    kept for the backward pass at the recipe's batch size and max_seq_length.
    """
    from zoo_core.cpu_features import precision_warnings
    from zoo_core.plan import plan_recipe
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.loader import load_recipe

    loaded = load_recipe(find_recipe(recipe), overrides or [])  # the file itself, else a bundled name
    estimate = plan_recipe(loaded)
    for warning in precision_warnings(loaded):
        err.print(warning, markup=False, highlight=False)
    teacher = f"; teacher {estimate.teacher_parameters / 1e6:.1f} M" if estimate.teacher_parameters else ""
    out.print(f"{loaded.name} ({loaded.kind}): {estimate.parameters / 1e6:.1f} M parameters trained{teacher}")
    for part, mib in estimate.rows():
        out.print(f"  {part:<36} {mib:>9.1f} MiB", markup=False)
