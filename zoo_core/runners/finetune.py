"""The fine-tune recipe, end to end: model, data, backend, one training stage, result.

Everything a backend does not need to know lives in zoo_core, once: which weights to
start from, how the data is read and batched, the schedule, when to evaluate and
save, how to resume.  The backend only builds the model and runs its steps.  The
run's prologue (and its order: cheap checks before the framework is imported) is
:mod:`zoo_core.runners.context`'s.
"""

from __future__ import annotations

from rich.console import Console

from zoo_core.backend import Backend
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.recipes.finetune import FinetuneRecipe
from zoo_core.runners.common import describe_init, run_meta, train_spec
from zoo_core.runners.context import prepare_context
from zoo_core.runners.evaluate import write_per_class
from zoo_core.runners.stage import RunResult, Stage, run_stage
from zoo_core.trainers import make_trainer


def run_finetune(
    recipe: FinetuneRecipe,
    backend_name: str,
    *,
    console: Console,
    restart: bool = False,
    progress: bool = True,
    backend: Backend | None = None,
) -> RunResult:
    """Fine-tune as ``recipe`` says on ``backend_name``; resume from the run directory's last checkpoint.

    ``backend`` may be passed in already built (tests do); otherwise it is created
    from the recipe's device and ``backend_options.<backend_name>``.
    """
    ctx = prepare_context(
        recipe, backend_name, console=console, restart=restart, progress=progress, backend=backend
    )
    if isinstance(ctx, RunResult):
        return ctx
    say, task = ctx.say, ctx.task
    source = resolve_model(recipe.model)
    config, weights, fresh = with_head(source, task.labels, task.is_regression, recipe.train.seed)
    data = ctx.read_data(
        config,
        source.vocab_path,
        source.lowercase,
        f"model {source.description}; task {task.name}; data {recipe.data.dir or recipe.data.train}",
    )
    backend, rundir = ctx.open()
    if rundir.latest_checkpoint() is None:
        describe_init(weights, fresh, recipe.train.seed, say)

    stage = Stage(
        name=recipe.name,
        rundir=rundir,
        train=recipe.train,
        eval=recipe.eval,
        checkpoints=recipe.checkpoints,
        task=task,
        config=config,
        vocab_path=source.vocab_path,
        lowercase=source.lowercase,
        train_data=data.train,
        evals=data.evals,
        meta=run_meta(recipe, task, backend_name, data),
    )
    model = backend.build_model(config)
    spec = train_spec(task, recipe.train, ctx.options)
    result = run_stage(
        stage,
        backend,
        model,
        weights,
        lambda: make_trainer(backend, model, config, spec),
        console=console,
        progress=progress,
        say=say,
    )
    write_per_class(rundir.path, backend, model, task, data.evals, recipe.eval.batch_size)
    return result
