"""The Optuna study behind ``zoo sweep``: storage, sampler, pruner, and one ``zoo run`` per trial.

How the pieces meet:

- **Storage.**  An :class:`optuna.storages.RDBStorage` (default ``sqlite:///SWEEP_DIR/sweep.db``;
  any SQLAlchemy URL, e.g. PostgreSQL, for workers on several machines), with Optuna's
  heartbeat: a trial whose worker died without a word (SIGKILL, power) is failed after
  :data:`GRACE_SECONDS` and re-queued by :class:`~optuna.storages.RetryFailedTrialCallback`.
- **Resume.**  A trial interrupted by Ctrl-C or SIGTERM queues its own retry at once (same
  settings, same grid point); the retry's run resumes from the trial directory's last
  checkpoint.  Finished trials are never run again: the grid sampler does not revisit
  finished points, and a run directory that holds a finished run returns its result.
- **Several workers.**  Each ``zoo sweep`` process on the same storage (and sweep directory)
  takes the next trial.  A trial's run directory is locked (``flock``) while it trains:
  a worker stops when every trial is finished or being trained by a live worker, and a
  worker that draws settings another one is training waits for that run and takes its
  result rather than training it twice.
- **Pruning.**  Every dev evaluation of a trial's run is reported to Optuna
  (:func:`zoo_core.runners.loop.evaluation_listener`, at the run's step); when the
  median pruner says so, the run stops there, its checkpoint saved, and the trial is PRUNED.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryFailedTrialCallback
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from zoo_core.errors import RunDirError, TrainingError, ZooError
from zoo_core.files import load_json
from zoo_core.recipes.kinds import KINDS
from zoo_core.runners.loop import evaluation_listener
from zoo_core.runs import RunDir, release_locks
from zoo_core.sweep.spec import Sweep, format_value, short_names
from zoo_core.sweep.summary import write_summary

try:
    import fcntl
except ImportError:  # Windows: workers on one machine then start one after another
    fcntl = None  # type: ignore[assignment]

#: seconds between a running trial's heartbeats in the storage
HEARTBEAT_SECONDS = 15
#: a running trial without a heartbeat for this long belonged to a dead worker: failed and re-queued
GRACE_SECONDS = 60
#: seconds between looks at a run directory another worker is training
WAIT_SECONDS = 2.0

Say = Callable[[str], None]


def open_study(sweep: Sweep) -> optuna.Study:
    """The sweep's study in its storage, created on first use; the sweep directory too."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # zoo sweep says what happens itself
    # the heartbeat's helpers (fail_stale_trials, RetryFailedTrialCallback) are marked experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sweep.directory.mkdir(parents=True, exist_ok=True)
    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.GridSampler(sweep.grid, seed=sweep.seed)
        if sweep.sampler == "grid"
        else optuna.samplers.TPESampler(seed=sweep.seed)
    )
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if sweep.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    # workers starting together would race to create the storage's tables and the study
    with _exclusive(sweep.directory / ".storage.lock"):
        try:
            storage = RDBStorage(
                sweep.storage,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                failed_trial_callback=RetryFailedTrialCallback(
                    max_retry=None, inherit_intermediate_values=True
                ),
            )
        except Exception as exc:  # SQLAlchemy's errors for a bad URL, a missing driver, a server away
            first = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise ZooError(f"--storage {sweep.storage}: {first}") from None
        study = optuna.create_study(
            storage=storage,
            study_name=sweep.name,
            direction="maximize",  # every dev metric zoo reports is better higher
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    metric = study.user_attrs.get("metric")
    if metric is None:
        study.set_user_attr("metric", sweep.metric)
    elif metric != sweep.metric:
        raise ZooError(
            f"{sweep.directory}: this sweep measures {metric}, not {sweep.metric}; "
            "pass --metric " + metric + " or sweep into another --output"
        )
    return study


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` while inside (where the OS has one)."""
    if fcntl is None:
        yield
        return
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ---- what a trial's state means to the sweep -------------------------------------------------
def _finished(trial: FrozenTrial) -> bool:
    """Done for good: completed, pruned, or failed in training (a diverging learning rate)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "error" in trial.user_attrs
    )


def _alive(sweep: Sweep, trial: FrozenTrial) -> bool:
    """True for a RUNNING trial a live worker is training (its run directory's lock is held)."""
    if trial.state != TrialState.RUNNING:
        return False
    run_dir = trial.user_attrs.get("run_dir")
    if run_dir is None:  # asked a moment ago; its worker has not locked its directory yet
        return True
    return RunDir(sweep.directory / run_dir, writer=False).lock_held()


def _key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, format_value(v)) for k, v in params.items()))


def outstanding(sweep: Sweep, study: optuna.Study) -> int:
    """Trials still to start: grid points (or TPE trials) neither finished nor being trained."""
    trials = study.get_trials(deepcopy=False)
    taken = [t for t in trials if _finished(t) or _alive(sweep, t)]
    if sweep.sampler == "grid":
        points = {_key(p) for p in sweep.points}
        done = {_key(t.params) for t in taken} & points
        return max(0, min(sweep.trials, len(points)) - len(done))
    return max(0, sweep.trials - len(taken))


# ---- one trial --------------------------------------------------------------------------------
def _claim(run_dir: Path, say: Say) -> None:
    """Lock the trial's run directory for this process, waiting while another worker trains it."""
    rundir = RunDir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        if not rundir.lock_held():
            try:
                rundir.lock()
                return
            except RunDirError:
                if not rundir.lock_held():  # not a lock held elsewhere: the directory's own problem
                    raise
        if not told:
            say(f"{run_dir}: another worker is training these settings; waiting to take its result")
            told = True
        time.sleep(WAIT_SECONDS)


def trial_value(run_dir: Path, metric: str, final: dict[str, float]) -> float:
    """The trial's result: ``metric`` of the model in best/ (the one ``zoo export`` takes)."""
    try:
        meta = load_json(run_dir / "best" / "zoo.json")
        value = meta.get("metrics", {}).get(metric)
    except ZooError:
        value = None
    if not isinstance(value, int | float):
        value = final[metric]
    return float(value)


def _retry(study: optuna.Study, number: int) -> None:
    """Queue trial ``number`` again (same settings, same grid point): it was interrupted, not judged."""
    for frozen in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        if frozen.number == number:
            RetryFailedTrialCallback(max_retry=None, inherit_intermediate_values=True)(study, frozen)


def make_objective(
    sweep: Sweep, console: Console, progress: bool, say: Say
) -> Callable[[optuna.Trial], float]:
    """Optuna's objective: the trial's settings as an ordinary run, its dev metric reported as it goes."""

    def objective(trial: optuna.Trial) -> float:
        params = {key: trial.suggest_categorical(key, values) for key, values in sweep.grid.items()}
        run_dir = sweep.trial_dir(params)
        trial.set_user_attr("run_dir", str(run_dir.relative_to(sweep.directory)))
        recipe = sweep.load_trial(params)
        shown = " ".join(
            f"{name}={format_value(params[key])}" for key, name in short_names(list(params)).items()
        )
        say(f"trial {trial.number}: {shown} ({run_dir})")

        def report(step: int, metrics: dict[str, float]) -> None:
            value = metrics.get(sweep.metric)
            if value is None:  # a stage without dev metrics (TinyBERT's intermediate layers)
                return
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"dev {sweep.metric} {value:.4f} at step {step} is below the median of earlier trials"
                )

        try:
            _claim(run_dir, say)
            runner = KINDS[recipe.kind].load_runner()
            with evaluation_listener(report):
                result = runner(recipe, sweep.backend, console=console, restart=False, progress=progress)
        except optuna.TrialPruned as exc:
            say(f"trial {trial.number} pruned: {exc}")
            raise
        except TrainingError as exc:  # these settings do not train (a loss gone to nan): a result
            trial.set_user_attr("error", str(exc))
            say(f"trial {trial.number} failed: {exc}")
            return float("nan")  # Optuna records the trial as FAIL
        except BaseException:  # Ctrl-C, SIGTERM, a full disk: the trial was not judged
            _retry(trial.study, trial.number)
            raise
        finally:
            release_locks()
        value = trial_value(result.run_dir, sweep.metric, result.final)
        say(f"trial {trial.number}: dev {sweep.metric} {value:.4f}")
        return value

    return objective


def run_sweep(sweep: Sweep, console: Console, *, progress: bool, say: Say) -> optuna.Study:
    """Run the sweep's outstanding trials in this process (one worker); return the study."""
    study = open_study(sweep)
    left = outstanding(sweep, study)
    if left == 0:
        say(f"{sweep.directory}: every trial is finished or being run by another worker")
        return study

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        save_summary(sweep, study)
        if outstanding(sweep, study) == 0:
            study.stop()

    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    study.optimize(
        make_objective(sweep, console, progress, say),
        n_trials=2 * left + waiting,  # a bound: the callback stops the loop when nothing is left
        callbacks=[after_trial],
    )
    return study


# ---- results --------------------------------------------------------------------------------------
@dataclass
class TrialRow:
    """One line of the sweep's table: the latest word on one trial directory."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    last_step: int | None
    wall_seconds: float | None
    run_dir: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (sweep.json)."""
        return dict(self.__dict__)


#: which trial of a run directory speaks for it: the most final state, then the newest
_RANK = {"COMPLETE": 5, "PRUNED": 4, "FAILED": 3, "RUNNING": 2, "INTERRUPTED": 1, "WAITING": 0}


def _row(sweep: Sweep, trial: FrozenTrial) -> TrialRow:
    run_dir = trial.user_attrs.get("run_dir") or str(
        sweep.trial_dir(trial.params).relative_to(sweep.directory)
    )
    last_step = max(trial.intermediate_values) if trial.intermediate_values else None
    state, value, note = trial.state.name, trial.value, ""
    if trial.state == TrialState.PRUNED:
        value = trial.intermediate_values[last_step] if last_step is not None else None
        note = f"at step {last_step}"
    elif trial.state == TrialState.FAIL:
        state = "FAILED" if "error" in trial.user_attrs else "INTERRUPTED"
        note = str(trial.user_attrs.get("error", "interrupted; queued again"))
    elif trial.state == TrialState.RUNNING:
        note = "running" if _alive(sweep, trial) else "its worker stopped; resumes on the next zoo sweep"
    wall: float | None = None
    result = sweep.directory / run_dir / "result.json"
    if result.is_file():
        try:
            wall = float(load_json(result).get("wall_seconds"))
        except (ZooError, TypeError, ValueError):
            wall = None
    if wall is None and trial.datetime_start is not None and trial.datetime_complete is not None:
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return TrialRow(trial.number, dict(trial.params), state, value, last_step, wall, run_dir, note)


def trial_rows(sweep: Sweep, study: optuna.Study) -> list[TrialRow]:
    """One row per trial directory, in the order the settings were first tried."""
    rows: dict[str, TrialRow] = {}
    first: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.WAITING or not trial.params:
            continue
        row = _row(sweep, trial)
        first.setdefault(row.run_dir, row.number)
        old = rows.get(row.run_dir)
        if old is None or (_RANK[row.state], row.number) >= (_RANK[old.state], old.number):
            rows[row.run_dir] = row
    return sorted(rows.values(), key=lambda r: first[r.run_dir])


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    """The completed trial with the highest metric."""
    done = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    return max(done, key=lambda r: r.value or 0.0) if done else None


def save_summary(sweep: Sweep, study: optuna.Study) -> list[TrialRow]:
    """Write sweep.json from the storage; return its rows."""
    rows = trial_rows(sweep, study)
    best = best_row(rows)
    write_summary(
        sweep.directory,
        {
            "recipe": str(sweep.recipe),
            "backend": sweep.backend,
            "metric": sweep.metric,
            "sampler": sweep.sampler,
            "pruner": sweep.pruner,
            "storage": sweep.storage,
            "grid": sweep.grid,
            "names": short_names(list(sweep.grid)),
            "trials": [r.as_dict() for r in rows],
            "best": None if best is None else best.as_dict(),
        },
    )
    return rows
