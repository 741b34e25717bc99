"""``zoo run RECIPE``: run a recipe on a backend, resuming where it stopped."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from zoo_core.cli.common import out, reports_errors


@reports_errors
def run(
    recipe: Annotated[str, typer.Argument(help="a recipe file, or the name of a bundled recipe")],
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="backend to run on (see `zoo backends`)")
    ] = "torch",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a field: --set train.batch_size=16 (repeatable)"),
    ] = None,
    restart: Annotated[bool, typer.Option(help="delete this recipe's earlier run and start over")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output; only the result")] = False,
) -> None:
    """Run RECIPE. An interrupted run resumes from its last checkpoint when run again.

    The last line printed is the dev metric.
    """
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.loader import load_recipe
    from zoo_core.runners.distill import run_distill
    from zoo_core.runners.finetune import run_finetune
    from zoo_core.runners.width import run_width

    loaded = load_recipe(find_recipe(recipe), overrides or [])
    runners = {"finetune": run_finetune, "distill": run_distill, "width": run_width}
    runner: Any = runners[loaded.kind]
    result = runner(loaded, backend, console=out, restart=restart, progress=not quiet)
    if result.best is not None and result.best_step != result.steps:
        out.print(
            f"best {result.main_metric} {result.best:.4f} at step {result.best_step} "
            f"({result.run_dir / 'best'})"
        )
    if result.train_samples_per_s:
        out.print(f"trained {result.steps} steps at {result.train_samples_per_s:.1f} samples/s")
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.final.items())
    out.print(f"dev {shown}")
