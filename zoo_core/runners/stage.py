"""One training stage, for every recipe kind: resume, loop, evaluate, checkpoint, result.

A stage trains one model with one trainer on one dataset into one run directory.
A fine-tune is one stage; a TinyBERT distillation is up to three.  What differs
between them — the model's initial weights and the trainer (plain loss or
distillation) — comes in from the caller.

Resuming trusts the newest complete step checkpoint: its trainer state says which
step best/ must hold (:meth:`RunDir.sync_best` repairs a best/ a kill left behind),
which metrics.jsonl records exist (:meth:`RunDir.trim_metrics`), and how long the run
has trained so far (result.json totals every process of the run).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from zoo_core.backend import Backend
from zoo_core.checkpoint import open_model_dir, write_checkpoint
from zoo_core.data.batching import collate, train_batches
from zoo_core.data.dataset import TokenizedDataset
from zoo_core.errors import TrainingError
from zoo_core.models.config import BertConfig
from zoo_core.models.weights import parameter_count
from zoo_core.recipes.common import CheckpointConfig, EvalConfig, TrainConfig
from zoo_core.runners.evaluate import evaluate_dataset
from zoo_core.runners.loop import LoopPlan, LoopState, run_loop
from zoo_core.runners.progress import TrainingProgress
from zoo_core.runners.schedule import total_steps, warmup_steps
from zoo_core.runs import RunDir, durable_write
from zoo_core.tasks import Task
from zoo_core.trainers import Training

#: the files of a step checkpoint that make up the portable checkpoint (copied to best/)
PORTABLE_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "zoo.json")


def peak_memory_mb() -> float | None:
    """This process's peak resident memory so far in MiB, or None where the OS does not say (Windows).

    Host memory of the whole process since it started (framework libraries, data,
    weights, optimizer states, activations), so a resumed run reports the peak of
    the resuming process.
    """
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@dataclass
class RunResult:
    """What a run or stage reports: the final and best dev metrics and where they are."""

    run_dir: Path
    main_metric: str | None
    final: dict[str, float]
    best: float | None
    best_step: int | None
    steps: int
    wall_seconds: float
    train_samples_per_s: float | None
    resumed_from: int | None = None
    peak_memory_mb: float | None = None
    #: examples trained on and seconds spent training, by every process of the run
    train_samples: int = 0
    train_seconds: float = 0.0
    #: model FLOPs of that training (:mod:`zoo_core.flops`) and their rate; None: not counted
    train_flops: int | None = None
    train_gflops_per_s: float | None = None

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
            "train_samples": self.train_samples,
            "train_seconds": round(self.train_seconds, 2),
            "train_flops": self.train_flops,
            "train_gflops_per_s": self.train_gflops_per_s,
            "resumed_from": self.resumed_from,
            "peak_memory_mb": None if self.peak_memory_mb is None else round(self.peak_memory_mb, 1),
        }

    @classmethod
    def from_dict(cls, run_dir: Path, done: Mapping[str, Any]) -> RunResult:
        """A result read back from result.json."""
        return cls(
            run_dir=run_dir,
            main_metric=done.get("main_metric"),
            final=dict(done.get("final", {})),
            best=done.get("best"),
            best_step=done.get("best_step"),
            steps=int(done.get("steps", 0)),
            wall_seconds=float(done.get("wall_seconds", 0.0)),
            train_samples_per_s=done.get("train_samples_per_s"),
            resumed_from=done.get("resumed_from"),
            peak_memory_mb=done.get("peak_memory_mb"),
            train_samples=int(done.get("train_samples", 0)),
            train_seconds=float(done.get("train_seconds", 0.0)),
            train_flops=done.get("train_flops"),
            train_gflops_per_s=done.get("train_gflops_per_s"),
        )


@dataclass
class Stage:
    """Everything a stage needs besides the backend, the model and the trainer."""

    name: str
    rundir: RunDir
    train: TrainConfig
    eval: EvalConfig
    checkpoints: CheckpointConfig
    task: Task
    config: BertConfig
    vocab_path: Path
    lowercase: bool
    train_data: TokenizedDataset
    #: labelled dev splits; empty for a stage without a dev metric (intermediate distillation)
    evals: dict[str, TokenizedDataset]
    #: what zoo.json of every checkpoint holds besides step, epoch and metrics
    meta: dict[str, Any]
    #: the dev metrics of the model (default: the task's metrics on every split of ``evals``)
    evaluate: Callable[[Any], dict[str, float]] | None = None
    #: keep the checkpoint with the best main metric as best/; False: the latest is best/
    select_best: bool = True


def metric_key(split: str, metric: str, splits: list[str]) -> str:
    """How a metric is named in logs: ``accuracy``, or ``dev_matched.accuracy`` with several splits."""
    return metric if len(splits) == 1 else f"{split}.{metric}"


def rank_batch_size(train: TrainConfig) -> int:
    """Examples one rank trains on per step: its micro-batch size times the accumulation steps."""
    return train.batch_size * train.gradient_accumulation_steps


def make_plan(stage: Stage, batches_per_epoch: int) -> LoopPlan:
    """The loop's plan from the stage's train/eval/checkpoint settings."""
    train = stage.train
    steps = total_steps(batches_per_epoch, train.num_epochs, train.max_steps)
    splits = list(stage.evals)
    return LoopPlan(
        total_steps=steps,
        warmup_steps=warmup_steps(steps, train.warmup_ratio, train.warmup_steps),
        peak_lr=train.learning_rate,
        batch_size=rank_batch_size(train),
        seed=train.seed,
        logging_steps=train.logging_steps,
        eval_every_steps=stage.eval.every_steps,
        eval_every_epoch=stage.eval.every_epoch,
        save_steps=stage.checkpoints.save_steps,
        keep_last=stage.checkpoints.keep_last,
        main_metric=(
            metric_key(splits[0], stage.task.main_metric, splits) if splits and stage.select_best else None
        ),
    )


def checkpoint_bytes(config: BertConfig) -> int:
    """About how many bytes a step checkpoint of ``config``'s model takes: fp32 weights, two Adam moments."""
    return 3 * 4 * parameter_count(config)


def check_weights_finite(weights: Mapping[str, np.ndarray], step: int, best_step: int | None) -> None:
    """Raise TrainingError rather than save weights that are not finite; ``best_step``: best/'s model."""
    bad = [name for name, value in weights.items() if not np.isfinite(value).all()]
    if bad:
        kept = f"best/ keeps step {best_step}'s model" if best_step is not None else "nothing was saved"
        raise TrainingError(
            f"step {step}: {len(bad)} weights are not finite (first {bad[0]}); stopping. {kept}; "
            "lower train.learning_rate and run again with --restart"
        )


def resume_state(rundir: RunDir, keep_last: int, say: Callable[[str], None]) -> tuple[Path | None, LoopState]:
    """The newest complete step checkpoint and its loop state; best/, metrics.jsonl and pruning made to agree.

    Without a checkpoint the state is a fresh one and metrics.jsonl loses whatever
    a killed process had logged.  Pruning comes after best/ is repaired, as in the loop.
    """
    latest = rundir.latest_checkpoint()
    state = LoopState.load(latest) if latest is not None else LoopState()
    if latest is not None:
        say(f"resuming from {latest} (step {state.step})")
    if rundir.sync_best(state.best_step, PORTABLE_FILES):
        say(f"best/ was behind the checkpoints; restored step {state.best_step}'s model")
    rundir.trim_metrics(state.step, state.last_eval_step)
    rundir.prune(keep_last)
    return latest, state


def run_stage(
    stage: Stage,
    backend: Backend,
    model: Any,
    initial_weights: Mapping[str, np.ndarray],
    make_trainer: Callable[[], Training],
    *,
    console: Console,
    progress: bool,
    say: Callable[[str], None],
    result_extra: Mapping[str, Any] | None = None,
    started: float | None = None,
) -> RunResult:
    """Train ``model`` from ``initial_weights`` (or the stage's newest checkpoint) to the end.

    result.json gets ``result_extra`` besides the result, in one atomic write;
    ``started`` (a ``time.perf_counter()``) is when the run began, if before the stage.
    """
    started = time.perf_counter() if started is None else started
    rundir = stage.rundir
    rundir.check_space(checkpoint_bytes(stage.config))
    latest, state = resume_state(rundir, stage.checkpoints.keep_last, say)
    if latest is not None:
        backend.load_weights(model, open_model_dir(latest).load_weights())
    else:
        backend.load_weights(model, initial_weights)
    resumed_from = state.step if latest is not None else None
    wall_before = state.wall_seconds
    trainer = make_trainer()
    if latest is not None:
        trainer.load_state(latest)

    lengths = stage.train_data.lengths
    batches_per_epoch = len(
        train_batches(lengths, rank_batch_size(stage.train), seed=0, epoch=0, world_size=backend.world_size)
    )
    plan = make_plan(stage, batches_per_epoch)
    rundir.log(
        f"backend={backend.name} device={backend.device} steps={plan.total_steps} "
        f"warmup={plan.warmup_steps} batches_per_epoch={batches_per_epoch}"
    )
    splits = list(stage.evals)

    def evaluate() -> dict[str, float]:
        if stage.evaluate is not None:
            return stage.evaluate(model)
        out: dict[str, float] = {}
        for split, dataset in stage.evals.items():
            metrics = evaluate_dataset(backend, model, stage.task, dataset, stage.eval.batch_size)
            out.update({metric_key(split, k, splits): v for k, v in metrics.items()})
        return out

    def save_checkpoint(target: Path, at: LoopState, metrics: dict[str, float]) -> None:
        def extra(tmp: Path) -> None:
            trainer.save_state(tmp)
            at.save(tmp)

        meta = {**stage.meta, "step": at.step, "epoch": at.epoch, "metrics": metrics}
        weights = backend.dump_weights(model)
        check_weights_finite(weights, at.step, rundir.best_step_on_disk())
        at.wall_seconds = wall_before + time.perf_counter() - started
        write_checkpoint(
            target,
            stage.config,
            weights,
            stage.vocab_path,
            meta,
            lowercase=stage.lowercase,
            extra=extra,
            durable=durable_write,
        )

    with TrainingProgress(console, plan.total_steps, stage.name, enabled=progress) as bar:
        bar.advance_to(state.step, None, 0.0, None)
        outcome = run_loop(
            plan=plan,
            lengths=lengths,
            make_batch=lambda indices: collate(stage.train_data, indices),
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
    result = RunResult(
        run_dir=rundir.path,
        main_metric=plan.main_metric,
        final=outcome.metrics,
        best=outcome.state.best_metric,
        best_step=outcome.state.best_step,
        steps=outcome.state.step,
        wall_seconds=wall_before + time.perf_counter() - started,
        train_samples_per_s=outcome.samples_per_s,
        resumed_from=resumed_from,
        peak_memory_mb=peak_memory_mb(),
        train_samples=outcome.samples,
        train_seconds=outcome.train_seconds,
        train_flops=outcome.flops,
        train_gflops_per_s=outcome.gflops_per_s,
    )
    rundir.write_result({**result.as_dict(), **(result_extra or {})})
    rundir.log(f"finished after {outcome.train_seconds:.0f}s of training: {result.as_dict()}")
    backend.barrier()  # the other ranks read best/ next
    return result
