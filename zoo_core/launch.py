"""``zoo run --nproc N``: start data-parallel workers through the backend's own launcher.

The parent process stays framework-free: it validates the recipe, handles
``--restart`` (so that no worker deletes what another is reading), asks the backend
spec's :class:`~zoo_core.distributed.Launcher` for the command, prints it (so users
can reuse it in their own schedulers) and runs it.  When a worker fails, the
message it wrote to ``rank-<r>.error`` becomes this command's error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoo_core.backend import BackendSpec, Device
from zoo_core.distributed import DATA_PARALLEL_ENV, LAUNCH_DIR_ENV, RANK_ENV_ENV, LaunchPlan
from zoo_core.errors import BackendError, RecipeError, ZooError

#: the script every worker runs (``python zoo_core/worker.py run RECIPE ...``)
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
DEFAULT_PORT = 29500


class WorkerError(ZooError):
    """A data-parallel worker failed; the message names its rank."""

    exit_code = 1


@dataclass(frozen=True)
class Topology:
    """How many workers where: ``nproc`` per machine on ``nnodes`` machines, this one ``node_rank``."""

    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None

    def check(self) -> tuple[str, int]:
        """Validate the numbers; return the master's address and port (a free local port by default)."""
        if self.nproc < 1:
            raise RecipeError(f"--nproc: expected a positive number of processes, got {self.nproc}")
        if self.nnodes < 1:
            raise RecipeError(f"--nnodes: expected a positive number of machines, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise RecipeError(f"--node-rank: expected 0 to {self.nnodes - 1}, got {self.node_rank}")
        if self.master is None:
            if self.nnodes > 1:
                raise RecipeError("--master ADDR:PORT is required with --nnodes > 1 (rank 0's machine)")
            return "127.0.0.1", free_port()
        addr, sep, port = self.master.rpartition(":")
        if not sep or not addr or not port.isdigit() or not 0 < int(port) < 65536:
            raise RecipeError(f"--master: expected ADDR:PORT (e.g. 10.0.0.1:29500), got {self.master!r}")
        return addr, int(port)


def free_port() -> int:
    """A TCP port free on this machine right now (the master's rendezvous port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", 0))
        except OSError:
            return DEFAULT_PORT
        return int(s.getsockname()[1])


def worker_args(recipe: str, backend: str, overrides: list[str], quiet: bool) -> tuple[str, ...]:
    """The ``zoo`` arguments every worker runs: the same recipe and overrides, never ``--restart``."""
    args = ["run", recipe, "--backend", backend]
    for item in overrides:
        args += ["--set", item]
    if quiet:
        args.append("--quiet")
    return tuple(args)


def plan_launch(
    spec: BackendSpec, device: Device, topology: Topology, args: tuple[str, ...], log_dir: Path
) -> tuple[LaunchPlan, list[str]]:
    """The launch plan and the launcher's argv; raises if the backend has no launcher."""
    if spec.launcher is None:
        raise BackendError(f"backend {spec.name!r} has no data-parallel launcher; run without --nproc")
    addr, port = topology.check()
    plan = LaunchPlan(
        nproc=topology.nproc,
        nnodes=topology.nnodes,
        node_rank=topology.node_rank,
        master_addr=addr,
        master_port=port,
        device=device,
        script=WORKER_SCRIPT,
        args=args,
        log_dir=log_dir,
    )
    return plan, spec.launcher.command(plan)


def shown_command(command: list[str]) -> str:
    """The command as a shell line, with the environment variable the workers need."""
    return f"{DATA_PARALLEL_ENV}=1 {shlex.join(command)}"


def run_launcher(
    command: list[str], launch_dir: Path, say: Callable[[str], None], rank_env: str = "RANK"
) -> None:
    """Run ``command`` with the worker environment; raise :class:`WorkerError` naming a failed rank.

    ``rank_env`` is the variable in which the launcher gives each worker its rank.
    """
    env = {**os.environ, DATA_PARALLEL_ENV: "1", LAUNCH_DIR_ENV: str(launch_dir), RANK_ENV_ENV: rank_env}
    say(f"launching: {shown_command(command)}")
    try:  # rank 0 prints progress on stdout; the launchers' and workers' chatter goes to the log
        with (launch_dir / "launcher.log").open("w", encoding="utf-8") as log:
            code = subprocess.run(command, env=env, stderr=log, check=False).returncode
    except FileNotFoundError:
        raise BackendError(f"launcher {command[0]!r} not found; is the framework installed?") from None
    if code == 0:
        return
    errors = sorted(launch_dir.glob("rank-*.error"))
    if errors:
        first = errors[0]
        rank = first.stem.removeprefix("rank-")
        lines = first.read_text(encoding="utf-8").strip().splitlines() or ["(no message)"]
        raise WorkerError(f"rank {rank}: {lines[-1]} (every rank's log and the launcher's: {launch_dir})")
    raise WorkerError(f"the launcher exited with code {code}; its log and the workers' are in {launch_dir}")


def launch(
    spec: BackendSpec,
    device: Device,
    topology: Topology,
    args: tuple[str, ...],
    say: Callable[[str], None],
) -> None:
    """Start the workers of ``zoo run --nproc`` and wait for them; keep the logs only on failure."""
    launch_dir = Path(tempfile.mkdtemp(prefix="zoo-launch-"))
    _, command = plan_launch(spec, device, topology, args, launch_dir / "logs")
    assert spec.launcher is not None  # plan_launch refuses a spec without one
    run_launcher(
        command, launch_dir, say, spec.launcher.rank_env
    )  # raises on failure, keeping launch_dir for the user
    shutil.rmtree(launch_dir, ignore_errors=True)
