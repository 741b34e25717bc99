"""What every recipe kind's runner shares: its data, its length checks, its records, its news.

Nothing here imports a framework: the helpers read and tokenise data, check what a
model can embed, build the backend's :class:`~zoo_core.backend.TrainSpec` and the
run's zoo.json record, and print progress lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from zoo_core.backend import TrainSpec
from zoo_core.checkpoint import package_versions
from zoo_core.data.dataset import TokenizedDataset, default_cache_dir
from zoo_core.data.own import load_own_splits
from zoo_core.data.splits import load_split
from zoo_core.data.tables import guess_format
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import DataError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import Weights
from zoo_core.plugins import get_backend_spec
from zoo_core.precision import loss_scale_spec
from zoo_core.recipes.common import DataConfig
from zoo_core.runners.stage import RunResult
from zoo_core.runs import RunDir
from zoo_core.tasks import Task
from zoo_core.tasks.own import task_record

#: prints one plain line of progress news (see :func:`speaker`)
Say = Callable[[str], None]


@dataclass
class TaskData:
    """A task's tokenised training split and labelled dev splits.

    ``split_record`` says how an own task's dev split was made (zoo.json's ``data_split``).
    """

    train: TokenizedDataset
    evals: dict[str, TokenizedDataset]
    split_record: dict[str, Any] | None = None


def _checked(dataset: TokenizedDataset, split: str, labelled: bool = True) -> TokenizedDataset:
    """``dataset``, unless it lacks labels (when ``labelled``) or examples."""
    if labelled and dataset.labels is None:
        raise DataError(f"{dataset.source}: split {split!r} has no labels")
    if len(dataset) == 0:
        raise DataError(f"{dataset.source}: split {split!r} has no examples")
    return dataset


def load_task_data(
    task: Task, data: DataConfig, tokenizer: WordPieceTokenizer, say: Say, *, labelled_train: bool = True
) -> TaskData:
    """Read and tokenise (through the cache) the training split and every dev split."""
    cache = data.cache_dir or default_cache_dir()
    if task.is_own:
        if data.train is not None:
            fmt, guessed = guess_format(data.train, data.format)
            if guessed:
                say(f"reading {data.train} as {fmt} (by its extension; set data.format to change)")
        own = load_own_splits(task, data, tokenizer, data.max_seq_length, cache)
        made = (
            f"{own.record['dev_split']:g} of train, seed {own.record['split_seed']}"
            if data.dev is None
            else ""
        )
        say(
            f"{len(own.train)} training examples; eval on dev {len(own.dev)}"
            + (f" ({made})" if made else "")
            + f"; labels {', '.join(task.labels)}"
        )
        return TaskData(_checked(own.train, "train"), {"dev": _checked(own.dev, "dev")}, own.record)

    def load(split: str, labelled: bool = True) -> TokenizedDataset:
        dataset = load_split(task, data, split, tokenizer, data.max_seq_length, cache)
        return _checked(dataset, split, labelled)

    train = load(data.train_split, labelled_train)
    eval_splits = [data.eval_split] if data.eval_split else list(task.eval_splits)
    evals = {split: load(split) for split in eval_splits}
    sizes = ", ".join(f"{split} {len(d)}" for split, d in evals.items())
    say(f"{len(train)} training examples; eval on {sizes}")
    return TaskData(train, evals)


def check_lengths(
    config: BertConfig,
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    what: str = "data.max_seq_length",
    hint: str = "",
) -> None:
    """Refuse a sequence length or vocabulary the model cannot embed.

    ``what`` names the length in the message (``--max-seq-length``, ...) and ``hint``
    ends it (``; pass --max-seq-length 64 or less``).
    """
    if max_seq_length > config.max_position_embeddings:
        raise ModelError(
            f"{what} {max_seq_length} exceeds the model's "
            f"max_position_embeddings {config.max_position_embeddings}{hint}"
        )
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelError(
            f"{tokenizer.vocab_path}: {tokenizer.vocab_size} tokens, "
            f"but the model's vocab_size is {config.vocab_size}"
        )


def train_spec(task: Task, train: Any, options: dict[str, Any]) -> TrainSpec:
    """The backend's TrainSpec for a task and a recipe's ``train`` section."""
    return TrainSpec(
        objective="regression" if task.is_regression else "classification",
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        seed=train.seed,
        options=options,
        accumulation_steps=train.gradient_accumulation_steps,
        precision=train.precision,
        loss_scale=loss_scale_spec(train),
    )


def run_meta(recipe: Any, task: Task, backend_name: str, data: TaskData | None = None) -> dict[str, Any]:
    """What every checkpoint's zoo.json of a run records (never imports the framework).

    An own task adds its definition (``task_spec``: columns, labels, metrics) and how
    its dev split was made (``data_split``), so later commands rebuild both.
    """
    meta: dict[str, Any] = {
        "kind": recipe.kind,
        "task": task.name,
        "backend": backend_name,
        "recipe": recipe.model_dump(mode="json"),
        "versions": package_versions(get_backend_spec(backend_name).framework),
    }
    if (spec := task_record(task)) is not None:
        meta["task_spec"] = spec
    if data is not None and data.split_record is not None:
        meta["data_split"] = data.split_record
    return meta


def reuse_finished(
    rundir: RunDir, resolved: dict[str, Any], restart: bool, console: Console
) -> RunResult | None:
    """The result of an identical finished run in ``rundir`` (unless ``restart``), else None."""
    rundir.check(resolved, restart)
    done = rundir.finished()
    if restart or done is None or rundir.saved_recipe() != resolved:
        return None
    console.print(f"{rundir.path} already holds this finished run; pass --restart to train again")
    return RunResult.from_dict(rundir.path, done)


def speaker(console: Console, enabled: bool) -> Say:
    """A function printing one plain line of progress news, or nothing when not ``enabled``."""

    def say(message: str) -> None:
        if enabled:
            console.print(message, highlight=False, markup=False)

    return say


def describe_init(weights: Weights, fresh: list[str], seed: int, say: Say) -> None:
    """Say which parameters start from scratch."""
    if len(fresh) == len(weights):
        say(f"every parameter freshly initialised (seed {seed})")
    elif fresh:
        say(f"freshly initialised: {', '.join(sorted({name.rsplit('.', 1)[0] for name in fresh}))}")
