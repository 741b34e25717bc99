"""The width recipe (DynaBERT), end to end: teacher, importance, reordering, multi-width training.

    runs/<name>/
      recipe.yaml, run.log, result.json    the run
      importance.npz                        head [L, H] and neuron [L, I] importance, summed
      step-N/, best/                        checkpoints of the full, reordered weights

The fine-tuned teacher's heads and FFN neurons are scored on held-out examples
(``Backend.importance``), the weights are permuted so the most important come first
(function-preserving), and then every step trains every width of ``width_mult_list``
against the full-width teacher.  Each evaluation measures every width on the dev
split through the sliced sub-model — the very model ``zoo export --width-mult``
writes — and records ``<metric>@<width>``.  best/ is the last checkpoint: no single
width's dev metric picks it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console

from zoo_core.backend import Backend, WidthSpec, capable
from zoo_core.data.batching import collate, eval_batches
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.errors import DataError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights
from zoo_core.models.width import reorder, width_dims
from zoo_core.recipes.width import ImportanceConfig, WidthRecipe
from zoo_core.runners.common import TaskData, run_meta, train_spec
from zoo_core.runners.context import prepare_context
from zoo_core.runners.evaluate import evaluate_dataset, write_per_class
from zoo_core.runners.stage import RunResult, Stage, metric_key, run_stage
from zoo_core.runners.teacher import check_teacher_split, load_teacher
from zoo_core.runners.widths import sliced_model, width_metric
from zoo_core.runs import RunDir
from zoo_core.tasks import Task
from zoo_core.trainers import make_width_trainer

IMPORTANCE_FILE = "importance.npz"


def check_widths(config: BertConfig, widths: list[float]) -> None:
    """Refuse widths that give the same sub-model (e.g. 0.83 and 0.8333 of 12 heads)."""
    seen: dict[tuple[int, int], float] = {}
    for width in widths:
        dims = width_dims(config, width)
        if dims in seen:
            raise ModelError(
                f"width.width_mult_list: {seen[dims]:g} and {width:g} both keep {dims[0]} heads "
                f"and {dims[1]} FFN neurons; list each sub-model once"
            )
        seen[dims] = width


def importance_split(
    data: TaskData, importance: ImportanceConfig, seed: int
) -> tuple[TokenizedDataset, TokenizedDataset, str]:
    """The examples importance is measured on, the training examples left, and a line saying which."""
    if importance.source == "dev":
        dev = next(iter(data.evals.values()))
        count = min(importance.examples, len(dev))
        return dev.subset(np.arange(count)), data.train, f"the first {count} dev examples (not held out)"
    total = len(data.train)
    if importance.examples >= total:
        raise DataError(
            f"width.importance.examples: {importance.examples} would hold out the whole training split "
            f"({total} examples); use fewer"
        )
    order = np.random.default_rng(seed).permutation(total)
    held, kept = np.sort(order[: importance.examples]), np.sort(order[importance.examples :])
    return (
        data.train.subset(held),
        data.train.subset(kept),
        f"{len(held)} training examples held out of training (seed {seed})",
    )


def measure_importance(
    backend: Backend, model: Any, dataset: TokenizedDataset, batch_size: int, say: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray]:
    """Head and neuron importance summed over ``dataset`` (``Backend.importance`` per batch)."""
    scorer = capable(backend, "width")
    batches = eval_batches(dataset.lengths, batch_size)
    heads: np.ndarray | None = None
    neurons: np.ndarray | None = None
    for number, indices in enumerate(batches, 1):
        h, n = scorer.importance(model, collate(dataset, indices))
        heads, neurons = (h, n) if heads is None or neurons is None else (heads + h, neurons + n)
        if number % 20 == 0 or number == len(batches):
            say(f"importance: {number}/{len(batches)} batches")
    assert heads is not None and neurons is not None
    return heads, neurons


def load_or_measure_importance(
    rundir: RunDir, measure: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The importance saved in ``rundir``, else ``measure()``'s, saved atomically for next time."""
    path = rundir.path / IMPORTANCE_FILE
    if path.is_file():
        with np.load(path) as saved:
            return saved["heads"], saved["neurons"]
    heads, neurons = measure()
    if rundir.writer:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, heads=heads, neurons=neurons)
        os.replace(tmp, path)
    return heads, neurons


def width_evaluator(
    backend: Backend,
    config: BertConfig,
    task: Task,
    evals: dict[str, TokenizedDataset],
    widths: list[float],
    batch_size: int,
) -> Callable[[Any], dict[str, float]]:
    """A function giving every width's dev metrics of a model, each through the sliced sub-model."""
    splits = list(evals)

    def evaluate(model: Any) -> dict[str, float]:
        weights = backend.dump_weights(model)
        out: dict[str, float] = {}
        for width in widths:
            sub, _ = sliced_model(backend, weights, config, width)
            for split, dataset in evals.items():
                for name, value in evaluate_dataset(backend, sub, task, dataset, batch_size).items():
                    out[width_metric(metric_key(split, name, splits), width)] = value
        return out

    return evaluate


def run_width(
    recipe: WidthRecipe,
    backend_name: str,
    *,
    console: Console,
    restart: bool = False,
    progress: bool = True,
    backend: Backend | None = None,
) -> RunResult:
    """Train the recipe's teacher at every width (DynaBERT), resuming where it stopped."""
    ctx = prepare_context(
        recipe, backend_name, console=console, restart=restart, progress=progress, backend=backend
    )
    if isinstance(ctx, RunResult):
        return ctx
    say, task = ctx.say, ctx.task
    teacher = load_teacher(recipe.teacher, task, backend_name, console, progress)
    teacher_dir = teacher.path
    config = teacher.config
    widths = recipe.width.width_mult_list
    check_widths(config, widths)
    dims = ", ".join(f"{w:g}: {h} heads/{n} FFN" for w in widths for h, n in [width_dims(config, w)])
    data = ctx.read_data(
        config, teacher.vocab_path, teacher.lowercase, f"teacher {teacher_dir}; widths {dims}"
    )
    check_teacher_split(teacher, data)
    scored, train_data, scored_on = importance_split(data, recipe.width.importance, recipe.train.seed)
    backend, rundir = ctx.open()
    teacher_weights = teacher.load_weights()
    teacher_model = backend.build_model(config)
    backend.load_weights(teacher_model, teacher_weights)

    start_weights: Weights = teacher_weights
    if rundir.latest_checkpoint() is None:
        say(f"importance of heads and neurons on {scored_on}")
        heads, neurons = load_or_measure_importance(
            rundir,
            lambda: measure_importance(
                backend, teacher_model, scored, recipe.width.importance.batch_size, say
            ),
        )
        start_weights = reorder(teacher_weights, config, heads, neurons)

    importance_meta = {
        "source": recipe.width.importance.source,
        "examples": len(scored),
        "held_out_of_training": recipe.width.importance.source == "train_holdout",
        "seed": recipe.train.seed,
        "described": scored_on,
    }
    stage = Stage(
        name=recipe.name,
        rundir=rundir,
        train=recipe.train,
        eval=recipe.eval,
        checkpoints=recipe.checkpoints,
        task=task,
        config=config,
        vocab_path=teacher.vocab_path,
        lowercase=teacher.lowercase,
        train_data=train_data,
        evals=data.evals,
        meta={
            **run_meta(recipe, task, backend_name, data),
            "teacher": str(teacher_dir),
            "width_mult_list": widths,
            "importance": importance_meta,
        },
        evaluate=width_evaluator(backend, config, task, data.evals, widths, recipe.eval.batch_size),
        select_best=False,
    )
    spec = WidthSpec(
        train=train_spec(task, recipe.train, ctx.options),
        widths=tuple(widths),
        loss_weights=recipe.width.loss_weights,
        temperature=recipe.width.temperature,
    )
    student = backend.build_model(config)
    teacher_metrics: Any = teacher.meta.get("metrics")
    result = run_stage(
        stage,
        backend,
        student,
        start_weights,
        lambda: make_width_trainer(
            backend, student, teacher_model, spec, student_config=config, teacher_config=teacher.config
        ),
        console=console,
        progress=progress,
        say=say,
        started=ctx.started,  # the teacher's training, if it ran, counts
        result_extra={  # result.json is written once, whole
            "teacher": str(teacher_dir),
            "teacher_metrics": teacher_metrics,
            "importance": importance_meta,
            "widths": {
                f"{w:g}": dict(zip(("heads", "neurons"), width_dims(config, w), strict=True)) for w in widths
            },
        },
    )
    write_per_class(rundir.path, backend, student, task, data.evals, recipe.eval.batch_size)
    if teacher_metrics:
        say(f"teacher dev {'  '.join(f'{k} {v:.4f}' for k, v in teacher_metrics.items())}")
    return result
