"""The fine-tuned teacher of a distillation or width run: found, run first if need be, checked.

A teacher is a checkpoint directory (or a run directory's best/), or a fine-tune
recipe, which is run first if it has not finished.  It must have been fine-tuned on
the run's task, with the task's labels in order, and (an own task) must not have
trained on the run's dev examples.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from zoo_core.checkpoint import ModelDir, open_model_dir
from zoo_core.errors import CheckpointError, RecipeError
from zoo_core.runners.common import TaskData
from zoo_core.runners.inference import checkpoint_task
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
    from zoo_core.runners.finetune import run_finetune

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
