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

import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from zoo_core.backend import Backend, DistillSpec
from zoo_core.checkpoint import ModelDir, atomic_directory, open_model_dir
from zoo_core.data.dataset import TokenizedDataset, tokenize_examples
from zoo_core.data.readers import Examples, read_text_lines
from zoo_core.data.splits import resolve_task
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import CheckpointError, ModelError, RecipeError
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.models.student import check_layer_map, copy_teacher_layers, uniform_layer_map
from zoo_core.models.weights import Weights, init_weights
from zoo_core.plugins import create_backend, require_capability
from zoo_core.recipes.distill import DistillRecipe, DistillStage
from zoo_core.runners.evaluate import write_per_class
from zoo_core.runners.finetune import (
    TaskData,
    check_lengths,
    load_task_data,
    reuse_finished,
    run_finetune,
    run_meta,
    speaker,
    train_spec,
)
from zoo_core.runners.inference import checkpoint_task
from zoo_core.runners.stage import PORTABLE_FILES, RunResult, Stage, peak_memory_mb, run_stage
from zoo_core.runs import RunDir
from zoo_core.tasks import Task


def check_teacher(checkpoint: ModelDir, task: Task) -> None:
    """Refuse a teacher that was not fine-tuned on ``task``: the classic way to lose hours.

    Its classifier must exist and name the task's labels in the task's order, and a
    zoo checkpoint must have been trained on this very task.
    """
    where = checkpoint.path
    recorded = checkpoint.meta.get("task")
    if recorded is not None and recorded != task.name:
        raise CheckpointError(f"{where}: the teacher was fine-tuned on {recorded}, not {task.name}")
    checkpoint_task(checkpoint, task.name, task)  # its classifier's labels must be the task's, in order
    weights_file = where / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights_file), framework="numpy") as handle:
        if "classifier.weight" not in set(handle.keys()):
            raise CheckpointError(
                f"{where}: the teacher has no classifier (a pretrained, not fine-tuned, model); "
                "fine-tune it on the task first"
            )


def check_teacher_split(teacher: ModelDir, data: TaskData) -> None:
    """Refuse a teacher trained on this run's dev examples (an own task split another way).

    Both runs record how they split the same training file (zoo.json's ``data_split``);
    a teacher that held out other examples has learnt part of this run's dev split,
    and the student's dev metric would be inflated.
    """
    mine, theirs = data.split_record, teacher.meta.get("data_split")
    if not mine or not isinstance(theirs, dict) or mine.get("train_sha256") != theirs.get("train_sha256"):
        return
    keys = ("dev", "dev_split", "split_seed", "dev_indices_sha256", "dev_sha256")
    if any(mine.get(k) != theirs.get(k) for k in keys):
        raise CheckpointError(
            f"{teacher.path}: the teacher split {mine['train']} into train and dev differently "
            f"(data.dev / dev_split / split_seed), so it trained on this run's dev examples; "
            "use the teacher's data settings"
        )


def resolve_teacher(ref: str, task: Task, backend_name: str, console: Console, progress: bool) -> Path:
    """The teacher's checkpoint: a directory, or the best/ of a fine-tune recipe (run first if needed)."""
    path = Path(ref)
    if path.is_dir():
        return path / "best" if (path / "best" / "config.json").is_file() else path
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.finetune import FinetuneRecipe
    from zoo_core.recipes.loader import load_recipe

    recipe = load_recipe(find_recipe(ref))
    if not isinstance(recipe, FinetuneRecipe):
        raise RecipeError(f"teacher: {ref} is a {recipe.kind} recipe; a teacher comes from a finetune recipe")
    if recipe.task_name != task.name:
        raise RecipeError(f"teacher: recipe {ref} fine-tunes on {recipe.task_name}, not {task.name}")
    rundir = RunDir(recipe.run_dir)
    if rundir.finished() is None:
        console.print(f"the teacher's recipe {ref} has not finished: running it first")
        run_finetune(recipe, backend_name, console=console, progress=progress)
    return rundir.best_dir


def load_teacher(ref: str, task: Task, backend_name: str, console: Console, progress: bool) -> ModelDir:
    """The teacher checkpoint: resolved (:func:`resolve_teacher`), opened, checked (:func:`check_teacher`)."""
    teacher = open_model_dir(resolve_teacher(ref, task, backend_name, console, progress))
    check_teacher(teacher, task)
    return teacher


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
    started = time.perf_counter()
    resolved = recipe.model_dump(mode="json")
    if (done := reuse_finished(RunDir(recipe.run_dir), resolved, restart, console)) is not None:
        return done

    say = speaker(console, progress)
    require_capability(backend_name, "distill")
    task = resolve_task(recipe.task, recipe.data)
    teacher = load_teacher(recipe.teacher, task, backend_name, console, progress)
    teacher_dir = teacher.path
    teacher_weights = teacher.load_weights()
    config, weights, origin = student_start(recipe, teacher, teacher_weights, task)
    layer_map = (
        uniform_layer_map(config.num_hidden_layers, teacher.config.num_hidden_layers)
        if recipe.layer_map == "uniform"
        else check_layer_map(recipe.layer_map, config.num_hidden_layers, teacher.config.num_hidden_layers)
    )
    tokenizer = WordPieceTokenizer(teacher.vocab_path, lowercase=teacher.lowercase)
    check_lengths(config, tokenizer, recipe.data.max_seq_length)
    say(
        f"teacher {teacher_dir}; student {config.num_hidden_layers}x{config.hidden_size} from {origin}; "
        f"layer map {list(layer_map)}"
    )
    data = load_task_data(task, recipe.data, tokenizer, say)
    check_teacher_split(teacher, data)

    options = recipe.backend_options.get(backend_name, {})
    if backend is None:
        backend = create_backend(backend_name, recipe.device, options)
    root = RunDir(recipe.run_dir, writer=backend.rank == 0)
    root.prepare(resolved, restart)
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
                train=train_spec(task, stage_recipe.train, options),
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
                partial(backend.make_distill_trainer, student_model, teacher_model, spec),
                console=console,
                progress=progress,
                say=say,
            )
        weights = open_model_dir(rundir.best_dir).load_weights()

    assert result is not None
    last = result.run_dir
    atomic_directory(root.best_dir, lambda tmp: _copy_portable(last / "best", tmp))
    summary = RunResult(
        run_dir=root.path,
        main_metric=result.main_metric,
        final=result.final,
        best=result.best,
        best_step=result.best_step,
        steps=result.steps,
        wall_seconds=time.perf_counter() - started,  # every stage (and the teacher, if it ran)
        train_samples_per_s=result.train_samples_per_s,
        resumed_from=result.resumed_from,
        peak_memory_mb=peak_memory_mb(),
    )
    write_per_class(root.path, backend, student_model, task, data.evals, recipe.eval.batch_size)
    teacher_metrics: Any = teacher.meta.get("metrics")
    root.write_result({**summary.as_dict(), "teacher": str(teacher_dir), "teacher_metrics": teacher_metrics})
    if teacher_metrics:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in teacher_metrics.items())
        say(f"teacher dev {shown}")
    return summary


def _copy_portable(source: Path, target: Path) -> None:
    """Copy a checkpoint's portable files from ``source`` into ``target``."""
    for name in PORTABLE_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
