"""The fine-tune recipe, end to end: model, data, backend, loop, checkpoints, result.

Everything a backend does not need to know lives here, once: which weights to
start from, how the data is read and batched, the schedule, when to evaluate and
save, how to resume.  The backend only builds the model and runs its steps.

Order matters for the user: every check that can fail cheaply (run directory,
model, data) runs before the framework is imported or anything is written, so a
bad input costs a second and leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from zoo_core.backend import Backend, TrainSpec
from zoo_core.checkpoint import package_versions, write_checkpoint
from zoo_core.data.batching import collate, train_batches
from zoo_core.data.dataset import TokenizedDataset, default_cache_dir, load_dataset
from zoo_core.data.tokenizer import WordPieceTokenizer
from zoo_core.errors import DataError, ModelError
from zoo_core.models.config import BertConfig
from zoo_core.models.resolve import resolve_model, with_head
from zoo_core.models.weights import Weights
from zoo_core.plugins import create_backend
from zoo_core.recipes.finetune import FinetuneRecipe
from zoo_core.runners.evaluate import evaluate_dataset
from zoo_core.runners.loop import LoopPlan, LoopState, run_loop
from zoo_core.runners.progress import TrainingProgress
from zoo_core.runners.schedule import total_steps, warmup_steps
from zoo_core.runs import RunDir
from zoo_core.tasks import Task, get_task

#: the files of a step checkpoint that make up the portable checkpoint (copied to best/)
PORTABLE_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "zoo.json")


@dataclass
class RunResult:
    """What ``zoo run`` reports: the final and best dev metrics and where they are."""

    run_dir: Path
    main_metric: str
    final: dict[str, float]
    best: float | None
    best_step: int | None
    steps: int
    wall_seconds: float
    train_samples_per_s: float | None
    resumed_from: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, written to result.json."""
        return {
            "main_metric": self.main_metric,
            "final": self.final,
            "best": self.best,
            "best_step": self.best_step,
            "best_checkpoint": str(self.run_dir / "best"),
            "steps": self.steps,
            "wall_seconds": round(self.wall_seconds, 1),
            "train_samples_per_s": self.train_samples_per_s,
            "resumed_from": self.resumed_from,
        }


@dataclass
class Prepared:
    """The inputs of a fine-tuning run, checked and loaded, before any framework import."""

    task: Task
    config: BertConfig
    weights: Weights
    fresh_parameters: list[str]
    vocab_path: Path
    lowercase: bool
    train: TokenizedDataset
    evals: dict[str, TokenizedDataset]


def metric_key(split: str, metric: str, splits: list[str]) -> str:
    """How a metric is named in logs: ``accuracy``, or ``dev_matched.accuracy`` with several splits."""
    return metric if len(splits) == 1 else f"{split}.{metric}"


def prepare_inputs(recipe: FinetuneRecipe, say: Callable[[str], None]) -> Prepared:
    """Resolve the model, build the tokenizer and load (through the cache) every split."""
    task = get_task(recipe.task)
    source = resolve_model(recipe.model)
    config, weights, fresh = with_head(source, task.labels, task.is_regression, recipe.train.seed)
    if recipe.data.max_seq_length > config.max_position_embeddings:
        raise ModelError(
            f"data.max_seq_length {recipe.data.max_seq_length} exceeds the model's "
            f"max_position_embeddings {config.max_position_embeddings}"
        )
    tokenizer = WordPieceTokenizer(source.vocab_path, lowercase=source.lowercase)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelError(
            f"{source.vocab_path}: {tokenizer.vocab_size} tokens, "
            f"but the model's vocab_size is {config.vocab_size}"
        )
    cache = recipe.data.cache_dir or default_cache_dir()
    say(f"model {source.description}; task {task.name}; data {recipe.data.dir}")

    def load(split: str) -> TokenizedDataset:
        dataset = load_dataset(task, recipe.data.dir, split, tokenizer, recipe.data.max_seq_length, cache)
        if dataset.labels is None:
            raise DataError(f"{dataset.source}: split {split!r} has no labels")
        if len(dataset) == 0:
            raise DataError(f"{dataset.source}: split {split!r} has no examples")
        return dataset

    train = load(recipe.data.train_split)
    eval_splits = [recipe.data.eval_split] if recipe.data.eval_split else list(task.eval_splits)
    evals = {split: load(split) for split in eval_splits}
    sizes = ", ".join(f"{split} {len(d)}" for split, d in evals.items())
    say(f"{len(train)} training examples; eval on {sizes}")
    return Prepared(task, config, weights, fresh, source.vocab_path, source.lowercase, train, evals)


def make_plan(recipe: FinetuneRecipe, task: Task, batches_per_epoch: int, evals: list[str]) -> LoopPlan:
    """The loop's plan from the recipe's train/eval/checkpoint sections."""
    train = recipe.train
    steps = total_steps(batches_per_epoch, train.num_epochs, train.max_steps)
    return LoopPlan(
        total_steps=steps,
        warmup_steps=warmup_steps(steps, train.warmup_ratio, train.warmup_steps),
        peak_lr=train.learning_rate,
        batch_size=train.batch_size,
        seed=train.seed,
        logging_steps=train.logging_steps,
        eval_every_steps=recipe.eval.every_steps,
        eval_every_epoch=recipe.eval.every_epoch,
        save_steps=recipe.checkpoints.save_steps,
        keep_last=recipe.checkpoints.keep_last,
        main_metric=metric_key(evals[0], task.main_metric, evals),
    )


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
    started = time.perf_counter()
    resolved = recipe.model_dump(mode="json")
    rundir = RunDir(recipe.run_dir)
    rundir.check(resolved, restart)
    done = rundir.finished()
    if not restart and done is not None and rundir.saved_recipe() == resolved:
        console.print(f"{rundir.path} already holds this finished run; pass --restart to train again")
        return _result_from_file(rundir, done)

    def say(message: str) -> None:
        if progress:
            console.print(message, highlight=False, markup=False)

    inputs = prepare_inputs(recipe, say)
    if backend is None:
        options = recipe.backend_options.get(backend_name, {})
        backend = create_backend(backend_name, recipe.device, options)
    rundir = RunDir(recipe.run_dir, writer=backend.rank == 0)
    rundir.prepare(resolved, restart)

    model = backend.build_model(inputs.config)
    latest = rundir.latest_checkpoint()
    state = LoopState()
    if latest is not None:
        from zoo_core.checkpoint import open_model_dir

        backend.load_weights(model, open_model_dir(latest).load_weights())
        state = LoopState.load(latest)
        say(f"resuming from {latest} (step {state.step})")
    else:
        backend.load_weights(model, inputs.weights)
        if inputs.fresh_parameters:
            heads = sorted({name.rsplit(".", 1)[0] for name in inputs.fresh_parameters})
            say(f"freshly initialised: {', '.join(heads)}")

    task = inputs.task
    spec = TrainSpec(
        objective="regression" if task.is_regression else "classification",
        weight_decay=recipe.train.weight_decay,
        max_grad_norm=recipe.train.max_grad_norm,
        seed=recipe.train.seed,
        options=recipe.backend_options.get(backend_name, {}),
    )
    trainer = backend.make_trainer(model, spec)
    if latest is not None:
        trainer.load_state(latest)

    lengths = inputs.train.lengths
    batches_per_epoch = len(
        train_batches(lengths, recipe.train.batch_size, seed=0, epoch=0, world_size=backend.world_size)
    )
    eval_names = list(inputs.evals)
    plan = make_plan(recipe, task, batches_per_epoch, eval_names)
    rundir.log(
        f"backend={backend.name} device={backend.device} steps={plan.total_steps} "
        f"warmup={plan.warmup_steps} batches_per_epoch={batches_per_epoch}"
    )

    def evaluate() -> dict[str, float]:
        out: dict[str, float] = {}
        for split, dataset in inputs.evals.items():
            metrics = evaluate_dataset(backend, model, task, dataset, recipe.eval.batch_size)
            out.update({metric_key(split, k, eval_names): v for k, v in metrics.items()})
        return out

    meta_base = {
        "kind": recipe.kind,
        "task": task.name,
        "backend": backend.name,
        "recipe": resolved,
        "versions": package_versions(_framework_of(backend_name)),
    }

    def save_checkpoint(target: Path, at: LoopState, metrics: dict[str, float]) -> None:
        def extra(tmp: Path) -> None:
            trainer.save_state(tmp)
            at.save(tmp)

        meta = {**meta_base, "step": at.step, "epoch": at.epoch, "metrics": metrics}
        write_checkpoint(
            target,
            inputs.config,
            backend.dump_weights(model),
            inputs.vocab_path,
            meta,
            lowercase=inputs.lowercase,
            extra=extra,
        )

    resumed_from = state.step if latest is not None else None
    with TrainingProgress(console, plan.total_steps, recipe.name, enabled=progress) as bar:
        bar.advance_to(state.step, None, 0.0, None)
        outcome = run_loop(
            plan=plan,
            lengths=lengths,
            make_batch=lambda indices: collate(inputs.train, indices),
            trainer=trainer,
            evaluate=evaluate,
            save_checkpoint=save_checkpoint,
            portable_files=PORTABLE_FILES,
            rundir=rundir,
            progress=bar,
            state=state,
            rank=backend.rank,
            world_size=backend.world_size,
        )
    state = outcome.state
    result = RunResult(
        run_dir=rundir.path,
        main_metric=plan.main_metric,
        final=outcome.metrics,
        best=state.best_metric,
        best_step=state.best_step,
        steps=state.step,
        wall_seconds=time.perf_counter() - started,
        train_samples_per_s=outcome.samples_per_s,
        resumed_from=resumed_from,
    )
    rundir.write_result(result.as_dict())
    rundir.log(f"finished after {outcome.train_seconds:.0f}s of training: {result.as_dict()}")
    return result


def _framework_of(backend_name: str) -> str:
    """The framework distribution a backend wraps, for zoo.json's versions (never imports it)."""
    from zoo_core.plugins import get_backend_spec

    return get_backend_spec(backend_name).framework


def _result_from_file(rundir: RunDir, done: dict[str, Any]) -> RunResult:
    """The RunResult of an already finished run, read back from result.json."""
    return RunResult(
        run_dir=rundir.path,
        main_metric=done.get("main_metric", ""),
        final=done.get("final", {}),
        best=done.get("best"),
        best_step=done.get("best_step"),
        steps=done.get("steps", 0),
        wall_seconds=0.0,
        train_samples_per_s=done.get("train_samples_per_s"),
        resumed_from=done.get("resumed_from"),
    )
