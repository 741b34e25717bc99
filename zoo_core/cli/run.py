"""``zoo run RECIPE``: run a recipe on a backend, resuming where it stopped."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer

from zoo_core.cli.common import err, out, reports_errors
from zoo_core.launch import Topology


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers send), raised where the run is so that it unwinds like Ctrl-C."""

    #: 128 + SIGTERM, as shells report a terminated process
    exit_code = 143
    message = "stopped by SIGTERM; earlier checkpoints are intact: run the same command to resume"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated`: temporary directories go, the lock is released."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@reports_errors
def run(
    recipe: Annotated[str, typer.Argument(help="a recipe file, or the name of a bundled recipe")],
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="backend to run on (see `zoo backends`)")
    ] = "torch",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a field: --set train.batch_size=16 (repeatable)"),
    ] = None,
    restart: Annotated[bool, typer.Option(help="delete this recipe's earlier run and start over")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output; only the result")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            "-n",
            help="data-parallel processes on this machine, started by the backend's own launcher",
        ),
    ] = 1,
    nnodes: Annotated[int, typer.Option(help="machines taking part (each runs this command)")] = 1,
    node_rank: Annotated[int, typer.Option(help="this machine's number, 0 to nnodes - 1")] = 0,
    master: Annotated[
        str | None,
        typer.Option(help="ADDR:PORT of node 0, where the workers meet (needed with --nnodes > 1)"),
    ] = None,
) -> None:
    """Run RECIPE. An interrupted run resumes from its last checkpoint when run again.

    With --nproc N (and --nnodes for several machines) the backend's launcher
    (torch.distributed.run, paddle.distributed.launch, msrun) starts the workers;
    train.batch_size is then per process.  The last line printed is the dev metric.
    """
    if nproc != 1 or nnodes != 1:
        launch_run(
            recipe, backend, overrides or [], restart, quiet, Topology(nproc, nnodes, node_rank, master)
        )
        return
    from zoo_core.cpu_features import precision_warnings
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.kinds import KINDS
    from zoo_core.recipes.loader import load_recipe
    from zoo_core.runs import release_locks

    loaded = load_recipe(find_recipe(recipe), overrides or [])
    runner = KINDS[loaded.kind].load_runner()
    for warning in precision_warnings(loaded, backend):
        err.print(warning, markup=False, highlight=False)
    try:
        with sigterm_as_interrupt():
            result = runner(loaded, backend, console=out, restart=restart, progress=not quiet)
    finally:
        release_locks()  # the run directories this command wrote
    if result.best is not None and result.best_step != result.steps:
        out.print(
            f"best {result.main_metric} {result.best:.4f} at step {result.best_step} "
            f"({result.run_dir / 'best'})"
        )
    if result.train_samples_per_s:
        gflops = f", {result.train_gflops_per_s:.1f} GFLOP/s" if result.train_gflops_per_s else ""
        out.print(f"trained {result.steps} steps at {result.train_samples_per_s:.1f} samples/s{gflops}")
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.final.items())
    out.print(f"dev {shown}")


def launch_run(
    recipe: str, backend: str, overrides: list[str], restart: bool, quiet: bool, topology: Topology
) -> None:
    """``zoo run --nproc``: check everything that can be checked here, then start the workers."""
    from zoo_core.launch import launch, worker_args
    from zoo_core.plugins import get_backend_spec
    from zoo_core.recipes.bundled import find_recipe
    from zoo_core.recipes.loader import load_recipe
    from zoo_core.runs import RunDir

    path = find_recipe(recipe)
    loaded = load_recipe(path, overrides)
    spec = get_backend_spec(backend)
    rundir = RunDir(loaded.run_dir)
    resolved = loaded.model_dump(mode="json")
    rundir.check(resolved, restart)
    if restart and topology.node_rank == 0 and rundir.saved_recipe() is not None:
        rundir.prepare(resolved, restart=True)  # delete here, before any worker reads it
        rundir.release()  # rank 0's worker takes the lock next
    args = worker_args(str(path.resolve()), backend, overrides, quiet)
    launch(spec, loaded.device, topology, args, lambda line: out.print(line, markup=False))
