"""The distillation recipe (TinyBERT), end to end: teacher, student, stages, result.

    runs/<name>/
      recipe.yaml, run.log, result.json    the run as a whole
      stage-1-general/ ...                  one run directory per stage (checkpoints, best/)
      best/                                 the student after the last stage

Each stage starts from the previous stage's final student and resumes on its own;
a finished stage is skipped when the recipe runs again.  Only the prediction stage
has a dev metric (the intermediate stages do not train the classifier), so the
others keep their latest checkpoint as best.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from rich.console import Console

from zoo_core.backend import Backend, DistillSpec
from zoo_core.checkpoint import ModelDir, open_model_dir
from zoo_core.data.dataset import TokenizedDataset, tokenize_examples
from zoo_core.data.readers import Examples, read_text_lines
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.models.student import check_layer_map, copy_teacher_layers, uniform_layer_map
from zoo_core.models.weights import Weights, init_weights
from zoo_core.recipes.distill import DistillRecipe, DistillStage
from zoo_core.runners.common import TaskData, run_meta, train_spec
from zoo_core.runners.context import prepare_context
from zoo_core.runners.evaluate import write_per_class
from zoo_core.runners.stage import PORTABLE_FILES, RunResult, Stage, peak_memory_mb, run_stage
from zoo_core.runners.teacher import check_teacher_split, load_teacher
from zoo_core.runs import RunDir
from zoo_core.tasks import Task
from zoo_core.trainers import make_distill_trainer


def student_start(
    recipe: DistillRecipe, teacher: ModelDir, teacher_weights: Weights, task: Task
) -> tuple[BertConfig, Weights, str]:
    """The student's config and first weights, and a line saying where they come from."""
    student = recipe.student
    if student.init == "teacher_layers":
        source = resolve_model(student.model, load_weights=False)
        layers = student.num_hidden_layers or source.config.num_hidden_layers
        shape = ("hidden_size", "num_attention_heads", "intermediate_size", "head_size")
        differ = [f for f in shape if getattr(source.config, f) != getattr(teacher.config, f)]
        if differ:
            raise ModelError(
                f"student.init teacher_layers needs the teacher's shape, "
                f"but {student.model} differs in {differ[0]}"
            )
        chosen = student.teacher_layers or list(uniform_layer_map(layers, teacher.config.num_hidden_layers))
        config, weights = copy_teacher_layers(teacher_weights, teacher.config, chosen)
        return config, weights, f"teacher layers {chosen}"
    source = resolve_model(student.model, load_weights=student.init == "checkpoint")
    base = source.config
    if student.num_hidden_layers is not None:
        if student.init == "checkpoint" and student.num_hidden_layers != base.num_hidden_layers:
            raise ModelError("student.num_hidden_layers cannot change a checkpoint's layer count")
        base = base.replace(num_hidden_layers=student.num_hidden_layers)
    source.config = base
    if student.init == "random":
        source.weights = None
    config, weights, _ = with_head(source, task.labels, task.is_regression, seed=recipe.stages[0].train.seed)
    if student.init == "random":
        weights = init_weights(config, recipe.stages[0].train.seed)
    return config, weights, f"{student.model} ({student.init})"


def general_text(
    stage: DistillStage, data: TaskData, tokenizer: WordPieceTokenizer, max_length: int
) -> TokenizedDataset:
    """The general stage's unlabelled text: the stage's file, or the task's training sentences."""
    if stage.text is None:
        return TokenizedDataset(
            data.train.ids, data.train.type_ids, data.train.offsets, None, data.train.source
        )
    lines = read_text_lines(stage.text)
    return tokenize_examples(Examples(lines, None, None, str(stage.text)), tokenizer, max_length)


def run_distill(
    recipe: DistillRecipe,
    backend_name: str,
    *,
    console: Console,
    restart: bool = False,
    progress: bool = True,
    backend: Backend | None = None,
) -> RunResult:
    """Distil the recipe's teacher into its student, stage by stage, resuming where it stopped."""
    ctx = prepare_context(
        recipe, backend_name, console=console, restart=restart, progress=progress, backend=backend
    )
    if isinstance(ctx, RunResult):
        return ctx
    say, task, resolved = ctx.say, ctx.task, ctx.resolved
    teacher = load_teacher(recipe.teacher, task, backend_name, console, progress)
    teacher_dir = teacher.path
    teacher_weights = teacher.load_weights()
    config, weights, origin = student_start(recipe, teacher, teacher_weights, task)
    layer_map = (
        uniform_layer_map(config.num_hidden_layers, teacher.config.num_hidden_layers)
        if recipe.layer_map == "uniform"
        else check_layer_map(recipe.layer_map, config.num_hidden_layers, teacher.config.num_hidden_layers)
    )
    data = ctx.read_data(
        config,
        teacher.vocab_path,
        teacher.lowercase,
        f"teacher {teacher_dir}; student {config.num_hidden_layers}x{config.hidden_size} from {origin}; "
        f"layer map {list(layer_map)}",
    )
    check_teacher_split(teacher, data)
    tokenizer = ctx.tokenizer
    assert tokenizer is not None  # read_data made it
    backend, root = ctx.open()
    teacher_model = backend.build_model(teacher.config)
    backend.load_weights(teacher_model, teacher_weights)
    student_model = backend.build_model(config)
    meta = {
        **run_meta(recipe, task, backend_name, data),
        "teacher": str(teacher_dir),
        "layer_map": list(layer_map),
    }

    result: RunResult | None = None
    for number, stage_recipe in enumerate(recipe.stages, start=1):
        name = f"stage-{number}-{stage_recipe.kind}"
        rundir = RunDir(root.path / name, writer=root.writer)
        stage_settings = {**resolved, "stage": stage_recipe.model_dump(mode="json")}
        finished = rundir.finished()
        if finished is not None and rundir.saved_recipe() == stage_settings:
            say(f"{name}: finished earlier, continuing from its student")
            result = RunResult.from_dict(rundir.path, finished)
        else:
            rundir.prepare(stage_settings)
            say(f"{name}: {', '.join(f'{k} x{w:g}' for k, w in stage_recipe.weights().items())}")
            prediction = stage_recipe.kind == "prediction"
            train_data = (
                general_text(stage_recipe, data, tokenizer, recipe.data.max_seq_length)
                if (stage_recipe.kind == "general")
                else data.train
            )
            stage = Stage(
                name=f"{recipe.name} {name}",
                rundir=rundir,
                train=stage_recipe.train,
                eval=recipe.eval,
                checkpoints=recipe.checkpoints,
                task=task,
                config=config,
                vocab_path=teacher.vocab_path,
                lowercase=teacher.lowercase,
                train_data=train_data,
                evals=data.evals if prediction else {},
                meta={**meta, "stage": name},
            )
            spec = DistillSpec(
                train=train_spec(task, stage_recipe.train, ctx.options),
                stage="prediction" if prediction else "intermediate",
                layer_map=layer_map,
                loss_weights=stage_recipe.weights(),
                temperature=stage_recipe.temperature,
            )
            result = run_stage(
                stage,
                backend,
                student_model,
                weights,
                partial(
                    make_distill_trainer,
                    backend,
                    student_model,
                    teacher_model,
                    spec,
                    student_config=config,
                    teacher_config=teacher.config,
                ),
                console=console,
                progress=progress,
                say=say,
            )
        weights = open_model_dir(rundir.best_dir).load_weights()

    assert result is not None
    last = result.run_dir
    # the writer rank only (two ranks replacing best/ at once collide), as every best/ write
    root.copy_to_best(last / "best", PORTABLE_FILES)
    summary = RunResult(
        run_dir=root.path,
        main_metric=result.main_metric,
        final=result.final,
        best=result.best,
        best_step=result.best_step,
        steps=result.steps,
        wall_seconds=time.perf_counter() - ctx.started,  # every stage (and the teacher, if it ran)
        train_samples_per_s=result.train_samples_per_s,
        resumed_from=result.resumed_from,
        peak_memory_mb=peak_memory_mb(),
        # the training figures are the last stage's, as its samples/s (each stage's result.json has its own)
        train_samples=result.train_samples,
        train_seconds=result.train_seconds,
        train_flops=result.train_flops,
        train_gflops_per_s=result.train_gflops_per_s,
    )
    write_per_class(root.path, backend, student_model, task, data.evals, recipe.eval.batch_size)
    teacher_metrics: Any = teacher.meta.get("metrics")
    root.write_result({**summary.as_dict(), "teacher": str(teacher_dir), "teacher_metrics": teacher_metrics})
    if teacher_metrics:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in teacher_metrics.items())
        say(f"teacher dev {shown}")
    return summary
