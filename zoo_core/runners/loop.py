"""The training loop every recipe stage uses; the backend contributes one step.

Rank-aware: every rank walks the same global batch order (seeded per epoch) and
takes its own shard; only the writer rank logs and writes checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from zoo_core.backend import Batch, Trainer
from zoo_core.data.batching import train_batches
from zoo_core.runners.progress import TrainingProgress
from zoo_core.runners.schedule import linear_warmup_decay
from zoo_core.runs import RunDir

STATE_FILE = "trainer_state.json"


@dataclass
class LoopState:
    """Where a run is; saved in every step checkpoint so it can resume exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None

    def save(self, directory: Path) -> None:
        """Write trainer_state.json into ``directory``."""
        (directory / STATE_FILE).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LoopState:
        """Read trainer_state.json from a step checkpoint."""
        return cls(**json.loads((directory / STATE_FILE).read_text()))


@dataclass(frozen=True)
class LoopPlan:
    """How long to train and how often to log, evaluate and save."""

    total_steps: int
    warmup_steps: int
    peak_lr: float
    batch_size: int
    seed: int
    logging_steps: int
    eval_every_steps: int | None
    eval_every_epoch: bool
    save_steps: int | None
    keep_last: int
    #: the dev metric that selects best/; None keeps the latest checkpoint as best
    main_metric: str | None


@dataclass
class LoopOutcome:
    """What a call of :func:`run_loop` did: where it ended, the last dev metrics, its speed."""

    state: LoopState
    metrics: dict[str, float]
    #: examples trained on (all ranks) and seconds spent in training steps, evaluation excluded
    samples: int
    train_seconds: float

    @property
    def samples_per_s(self) -> float | None:
        """Training throughput of this call, or None if it trained nothing."""
        return self.samples / self.train_seconds if self.samples and self.train_seconds > 0 else None


Evaluate = Callable[[], dict[str, float]]
SaveCheckpoint = Callable[[Path, LoopState, dict[str, float]], None]


def run_loop(
    *,
    plan: LoopPlan,
    lengths: np.ndarray,
    make_batch: Callable[[np.ndarray], Batch],
    trainer: Trainer,
    evaluate: Evaluate,
    save_checkpoint: SaveCheckpoint,
    portable_files: tuple[str, ...],
    rundir: RunDir,
    progress: TrainingProgress,
    state: LoopState,
    rank: int = 0,
    world_size: int = 1,
) -> LoopOutcome:
    """Train until ``plan.total_steps``; return the final state, last dev metrics and speed.

    Evaluation runs at the plan's cadence and always after the last step; each
    evaluation writes a step checkpoint and, if the main metric improved, best/.
    """
    last_metrics: dict[str, float] = {}
    evaluated_at = -1
    loop_started, paused, total_samples = time.perf_counter(), 0.0, 0
    window_t, window_samples, window_tokens, window_loss, window_n = time.perf_counter(), 0, 0, 0.0, 0

    def do_eval_and_save(state: LoopState) -> dict[str, float]:
        nonlocal evaluated_at, window_t, paused
        t0 = time.perf_counter()
        metrics = evaluate()
        evaluated_at = state.step
        main = metrics.get(plan.main_metric) if plan.main_metric else None
        if main is None:  # nothing to select by: the latest checkpoint is the best one
            improved = True
            state.best_step = state.step
        else:
            improved = state.best_metric is None or main > state.best_metric
            if improved:
                state.best_metric, state.best_step = main, state.step
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "(no dev metric in this stage)"
        marker = "  (best)" if main is not None and improved else ""
        progress.print(f"step {state.step} epoch {state.epoch}: dev {shown}{marker}", always=True)
        rundir.log(f"eval step={state.step} {json.dumps(metrics)} ({time.perf_counter() - t0:.1f}s)")
        rundir.log_metrics({"step": state.step, "epoch": state.epoch, "eval": metrics})
        save(state, metrics, best=improved)
        spent = time.perf_counter() - t0
        window_t += spent  # evaluation and saving do not count against training speed
        paused += spent
        return metrics

    def save(state: LoopState, metrics: dict[str, float], best: bool = False) -> None:
        if not rundir.writer:
            return
        target = rundir.checkpoint_dir(state.step)
        save_checkpoint(target, state, metrics)
        if best:
            rundir.copy_to_best(target, portable_files)
        rundir.prune(plan.keep_last)

    while state.step < plan.total_steps:
        batches = train_batches(
            lengths, plan.batch_size, seed=plan.seed, epoch=state.epoch, rank=rank, world_size=world_size
        )
        for indices in batches[state.batch_in_epoch :]:
            lr = linear_warmup_decay(state.step, plan.total_steps, plan.warmup_steps, plan.peak_lr)
            batch = replace(make_batch(indices), step=state.step)  # keys its dropout masks
            out = trainer.step(batch, lr)
            state.step += 1
            state.batch_in_epoch += 1
            window_samples += len(batch) * world_size
            total_samples += len(batch) * world_size
            window_tokens += batch.num_tokens * world_size
            window_loss += out["loss"]
            window_n += 1
            if state.step % plan.logging_steps == 0 or state.step == plan.total_steps:
                dt = time.perf_counter() - window_t
                record = {
                    "step": state.step,
                    "epoch": state.epoch,
                    "lr": lr,
                    "samples_per_s": window_samples / dt,
                    "tokens_per_s": window_tokens / dt,
                    **{k: v for k, v in out.items() if k != "loss"},
                    "loss": window_loss / window_n,
                }
                rundir.log_metrics(record)
                rundir.log(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                    )
                )
                progress.print(
                    f"step {state.step}/{plan.total_steps}  loss {record['loss']:.4f}  lr {lr:.2e}  "
                    f"{record['samples_per_s']:.1f} samples/s"
                )
                progress.advance_to(state.step, record["loss"], lr, record["samples_per_s"])
                window_t, window_samples, window_tokens, window_loss, window_n = (
                    time.perf_counter(),
                    0,
                    0,
                    0.0,
                    0,
                )
            else:
                progress.advance_to(state.step, None, lr, None)
            if plan.eval_every_steps and state.step % plan.eval_every_steps == 0:
                last_metrics = do_eval_and_save(state)
            elif plan.save_steps and state.step % plan.save_steps == 0:
                save(state, last_metrics)
            if state.step >= plan.total_steps:
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
            if plan.eval_every_epoch and evaluated_at != state.step:
                last_metrics = do_eval_and_save(state)
            continue
        break
    if evaluated_at != state.step:
        last_metrics = do_eval_and_save(state)
    return LoopOutcome(state, last_metrics, total_samples, time.perf_counter() - loop_started - paused)
