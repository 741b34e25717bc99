"""The training loop every recipe stage uses; the backend contributes one step.

Rank-aware: every rank walks the same global batch order (seeded per epoch) and
takes its own shard; only the writer rank logs and writes checkpoints.

Every step's loss and gradient norm pass :func:`check_finite`: a non-finite one stops
the run before anything of it is saved, so best/ and the step checkpoints keep the
last good model.

Speed: each logging window's record has ``samples_per_s``, ``tokens_per_s`` (real
tokens) and ``gflops_per_s`` (the model FLOPs of :mod:`zoo_core.flops`, every rank's
shard, over the window's wall time); the state totals samples, seconds and FLOPs across
resumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from zoo_core.backend import Batch
from zoo_core.data.batching import train_batches
from zoo_core.errors import CheckpointError, TrainingError
from zoo_core.files import Count, check_fields, load_json
from zoo_core.runners.progress import TrainingProgress
from zoo_core.runners.schedule import linear_warmup_decay
from zoo_core.runs import RunDir
from zoo_core.trainers import Training

STATE_FILE = "trainer_state.json"
#: fp16 steps overflowing in a row that stop a run: its losses are not finite at any scale
MAX_SKIPPED_IN_A_ROW = 50
#: the types trainer_state.json's fields must have (checked on resume)
STATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("step", "epoch", "batch_in_epoch", "samples"), Count),
    **dict.fromkeys(("best_step", "last_eval_step", "flops"), (Count, type(None))),
    "best_metric": (float, type(None)),
    "last_metrics": dict,
    "last_metrics.*": float,
    "train_seconds": float,
    "wall_seconds": float,
    "loss_scale": (dict, type(None)),
    "loss_scale.scale": float,
    "loss_scale.good_steps": Count,
}


@dataclass
class LoopState:
    """Where a run is; saved in every step checkpoint so it can resume exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    #: the step of the last evaluation and its dev metrics (a resumed run does not repeat it)
    last_eval_step: int | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    #: the whole run's training so far, across resumes: examples (all ranks) and seconds
    samples: int = 0
    train_seconds: float = 0.0
    #: the whole run's model FLOPs so far (:mod:`zoo_core.flops`), all ranks; None: not counted
    #: (a run resumed from a checkpoint of a zoo that did not count them)
    flops: int | None = 0
    #: the whole run's wall-clock seconds so far (the stage keeps it)
    wall_seconds: float = 0.0
    #: fp16's loss scaler after this step (:meth:`zoo_core.precision.LossScaler.state`), else None
    loss_scale: dict[str, float] | None = None

    def save(self, directory: Path) -> None:
        """Write trainer_state.json into ``directory``."""
        (directory / STATE_FILE).write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LoopState:
        """Read trainer_state.json from a step checkpoint (keys of other versions are ignored)."""
        path, context = directory / STATE_FILE, "corrupt (delete this checkpoint, or run with --restart)"
        data = load_json(path, error=CheckpointError, context=context)
        check_fields(data, STATE_FIELDS, path, error=CheckpointError, context=context)
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if "flops" not in data and state.step:  # written before FLOPs were counted: the total is unknown
            state.flops = None
        return state


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

    @property
    def samples(self) -> int:
        """Examples trained on (all ranks) by the whole run, across resumes."""
        return self.state.samples

    @property
    def train_seconds(self) -> float:
        """Seconds the whole run spent in training steps (evaluation and saving excluded)."""
        return self.state.train_seconds

    @property
    def samples_per_s(self) -> float | None:
        """Training throughput of the whole run, or None if it trained nothing."""
        return self.samples / self.train_seconds if self.samples and self.train_seconds > 0 else None

    @property
    def flops(self) -> int | None:
        """Model FLOPs of the whole run's training (:mod:`zoo_core.flops`), or None if not counted."""
        return self.state.flops if self.samples else None

    @property
    def gflops_per_s(self) -> float | None:
        """Achieved GFLOP/s of the whole run's training, or None (nothing trained or not counted)."""
        flops = self.flops
        return flops / self.train_seconds / 1e9 if flops and self.train_seconds > 0 else None


Evaluate = Callable[[], dict[str, float]]
SaveCheckpoint = Callable[[Path, LoopState, dict[str, float]], None]
#: told each evaluation's step and dev metrics once its checkpoint is saved (:func:`evaluation_listener`)
EvalListener = Callable[[int, dict[str, float]], None]
_listeners: list[EvalListener] = []


@contextmanager
def evaluation_listener(listener: EvalListener) -> Iterator[None]:
    """While inside, ``listener(step, metrics)`` follows every evaluation of every run in this process.

    ``zoo sweep`` reports the dev metrics to its pruner this way.  A listener may raise
    to stop the run: the evaluation's step checkpoint (and best/) are already written,
    so the run resumes from there when run again.
    """
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def nonfinite_reason(out: Mapping[str, float]) -> str | None:
    """``"loss is nan"`` (or ``grad_norm is inf``) for a step result that is not finite, else None.

    The one test of a step's health: the guard below stops on it; mixed precision
    may skip the step instead.
    """
    for key in ("loss", "grad_norm"):
        value = out.get(key)
        if value is not None and not math.isfinite(float(value)):
            return f"{key} is {float(value)}"
    return None


def check_finite(step: int, out: Mapping[str, float], best_step: int | None) -> None:
    """Raise TrainingError naming ``step`` if its loss or gradient norm is not finite.

    ``best_step`` is the step of the model best/ holds (None: nothing saved yet).
    """
    reason = nonfinite_reason(out)
    if reason is None:
        return
    kept = (
        f"best/ keeps step {best_step}'s model"
        if best_step is not None
        else "no checkpoint was written before it"
    )
    raise TrainingError(
        f"step {step}: {reason}; stopping. {kept}; lower train.learning_rate and run again with --restart"
    )


def run_loop(
    *,
    plan: LoopPlan,
    lengths: np.ndarray,
    make_batch: Callable[[np.ndarray], Batch],
    trainer: Training,
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
    last_metrics: dict[str, float] = dict(state.last_metrics)
    if trainer.scaler is not None and state.loss_scale is not None:  # resuming an fp16 run
        trainer.scaler.restore(state.loss_scale)
    evaluated_at = -1 if state.last_eval_step is None else state.last_eval_step
    loop_started, paused, seconds_before = time.perf_counter(), 0.0, state.train_seconds

    def training_seconds(now: float) -> float:
        return seconds_before + now - loop_started - paused

    window_t, window_samples, window_tokens, window_loss, window_n = time.perf_counter(), 0, 0, 0.0, 0
    window_skipped = in_a_row = window_flops = 0
    counting = trainer.flops is not None

    def do_eval_and_save(state: LoopState) -> dict[str, float]:
        nonlocal evaluated_at, window_t, paused
        t0 = time.perf_counter()
        state.train_seconds = training_seconds(t0)
        metrics = evaluate()
        evaluated_at = state.step
        state.last_eval_step, state.last_metrics = state.step, dict(metrics)
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
        for listener in list(_listeners):
            listener(state.step, dict(metrics))
        return metrics

    def save(state: LoopState, metrics: dict[str, float], best: bool = False) -> None:
        if not rundir.writer:
            return
        target = rundir.checkpoint_dir(state.step)
        with rundir.writing(f"checkpoint step-{state.step}"):
            save_checkpoint(target, state, metrics)
        if best:  # after the checkpoint, which records it as best: a resume can redo this
            rundir.copy_to_best(target, portable_files)
        rundir.prune(plan.keep_last)  # last: the checkpoint best/ comes from stays until best/ is written

    while state.step < plan.total_steps:
        batches = train_batches(
            lengths, plan.batch_size, seed=plan.seed, epoch=state.epoch, rank=rank, world_size=world_size
        )
        # every rank's batches, for the FLOPs of the whole step (each rank can work them out)
        shards = [batches]
        if counting and world_size > 1:
            shards = [
                batches
                if r == rank
                else train_batches(
                    lengths, plan.batch_size, seed=plan.seed, epoch=state.epoch, rank=r, world_size=world_size
                )
                for r in range(world_size)
            ]
        for number, indices in enumerate(batches[state.batch_in_epoch :], start=state.batch_in_epoch):
            lr = linear_warmup_decay(state.step, plan.total_steps, plan.warmup_steps, plan.peak_lr)
            batch = replace(make_batch(indices), step=state.step)  # keys its dropout masks
            out = trainer.step(batch, lr)
            state.step += 1
            skipped = bool(out.get("skipped"))
            if trainer.scaler is not None:
                state.loss_scale = trainer.scaler.state()
            in_a_row = in_a_row + 1 if skipped else 0
            if skipped:  # fp16 overflow: no update was made; the scaler has backed off
                window_skipped += 1
                scale = out["loss_scale"]
                rundir.log(f"step {state.step}: gradients overflowed at loss scale {scale:g}; skipped")
                if in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    best = state.best_step
                    kept = f"best/ keeps step {best}'s model" if best is not None else "nothing was saved"
                    raise TrainingError(
                        f"step {state.step}: {in_a_row} steps in a row overflowed (loss scale now "
                        f"{trainer.scaler.scale if trainer.scaler else scale:g}); stopping. {kept}; "
                        "check the data, or train in bf16 or fp32"
                    )
            elif (reason := nonfinite_reason(out)) is not None:
                rundir.log(f"step {state.step}: {reason}; stopping")
                check_finite(state.step, out, state.best_step)
            state.batch_in_epoch += 1
            step_flops = (
                trainer.step_flops([lengths[shard[number]] for shard in shards]) if counting else None
            )
            if step_flops is not None:
                window_flops += step_flops
                if state.flops is not None:
                    state.flops += step_flops
            window_samples += len(batch) * world_size
            state.samples += len(batch) * world_size
            window_tokens += batch.num_tokens * world_size
            if not skipped:
                window_loss += out["loss"]
                window_n += 1
            if state.step % plan.logging_steps == 0 or state.step == plan.total_steps:
                dt = time.perf_counter() - window_t
                shown = {k: v for k, v in out.items() if k not in ("loss", "skipped") and math.isfinite(v)}
                record = {
                    "step": state.step,
                    "epoch": state.epoch,
                    "lr": lr,
                    "samples_per_s": window_samples / dt,
                    "tokens_per_s": window_tokens / dt,
                    **({"gflops_per_s": window_flops / dt / 1e9} if counting else {}),
                    **shown,
                    **({"skipped_steps": window_skipped} if trainer.scaler is not None else {}),
                    "loss": window_loss / window_n if window_n else 0.0,  # every step skipped: no loss
                }
                rundir.log_metrics(record)
                rundir.log(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                    )
                )
                gflops = f"  {record['gflops_per_s']:.1f} GFLOP/s" if counting else ""
                progress.print(
                    f"step {state.step}/{plan.total_steps}  loss {record['loss']:.4f}  lr {lr:.2e}  "
                    f"{record['samples_per_s']:.1f} samples/s{gflops}"
                )
                progress.advance_to(
                    state.step, record["loss"], lr, record["samples_per_s"], record.get("gflops_per_s")
                )
                window_skipped = window_flops = 0
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
                state.train_seconds = training_seconds(time.perf_counter())
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
    state.train_seconds = training_seconds(time.perf_counter())
    return LoopOutcome(state, last_metrics)
