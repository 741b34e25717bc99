"""``msrun`` as ``zoo run --nproc`` runs it, and the script it starts in every process.

``zoo run --nproc N`` on the mindspore backend runs (see :func:`zoo_mindspore.plugin.launcher_command`)::

    python -m zoo_mindspore.msrun --worker_num W --local_worker_num N --master_addr A \\
        --master_port P --node_rank R --log_dir D --join True \\
        .../zoo_mindspore/msrun.py .../zoo_core/worker.py run RECIPE ...

The arguments are ``msrun``'s (``mindspore.parallel.cluster.run``), unchanged; this
module runs msrun with four fixes for zoo's use:

* msrun starts every process as ``python SCRIPT``, ``python`` taken from ``PATH``: the
  folder of this interpreter goes first on ``PATH``, so that the workers run in the
  environment that has MindSpore (a venv that is not activated is not on ``PATH``);
* msrun starts a *scheduler* process with the same script as the workers (``MS_ROLE=
  MS_SCHED``, ``RANK_ID=0``).  This file is that script: in the scheduler it only serves
  the cluster (``mindspore.communication.init()``), in a worker it runs ``SCRIPT ARGS``
  as ``python SCRIPT ARGS`` would (:func:`run_process`), so no recipe runs twice as rank 0;
* when a worker fails, msrun kills the other workers but then waits for the scheduler,
  which waits for the lost workers up to ``--cluster_time_out`` (600 s by default, when
  they died before joining): the scheduler is killed with them, so the run stops at once;
* msrun writes each worker's output (standard output and error together) to
  ``D/worker_<rank>.log`` and tails those files to its standard output; here rank 0's
  standard output goes to ``D/rank-0.stdout`` instead and that alone is copied to this
  command's standard output (zoo's progress), while msrun's own messages and the
  tailed logs go to its standard error (``zoo run`` keeps them in ``launcher.log``).

``OMP_NUM_THREADS`` is 1 in every worker unless set (as torchrun does); the backend uses
it as MindSpore's CPU thread count when the recipe sets none (see
:func:`zoo_mindspore.parallel.worker_threads`).
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

#: the script msrun runs in every process it starts: this file
ENTRY = Path(__file__).resolve()
#: where rank 0 writes its standard output (set by :func:`launch` for the workers)
STDOUT_ENV = "ZOO_MSRUN_STDOUT"
#: the file name of rank 0's standard output in msrun's log folder
STDOUT_FILE = "rank-0.stdout"


# ---- the launcher ----------------------------------------------------------------------------


class _Follower(threading.Thread):
    """Copies what is appended to ``path`` to ``out`` until stopped (then copies the rest)."""

    def __init__(self, path: Path, out: BinaryIO) -> None:
        super().__init__(daemon=True)
        self.path, self.out = path, out
        self.position = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.copy()
        self.copy()

    def copy(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.position)
                data = f.read()
        except OSError:  # not written yet
            return
        if data:
            self.out.write(data)
            self.out.flush()
            self.position += len(data)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _process_manager(args: Any) -> Any:
    """msrun's process manager, which also kills the scheduler when it kills the workers."""
    from mindspore.parallel.cluster.process_entity import _ProcessManager

    class ProcessManager(_ProcessManager):
        def kill_worker_processes(self) -> None:
            super().kill_worker_processes()
            scheduler = getattr(self, "msn_process", None)
            if scheduler is not None and scheduler.poll() is None:
                scheduler.kill()

    return ProcessManager(args)


def launch(argv: list[str]) -> None:
    """Run msrun with ``argv`` (its own arguments) and the fixes the module docstring lists."""
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mindspore.parallel.cluster.run import get_args

    sys.argv = ["msrun", *argv]
    args = get_args()
    stdout_path = Path(args.log_dir or ".").resolve() / STDOUT_FILE
    stdout_path.unlink(missing_ok=True)
    os.environ[STDOUT_ENV] = str(stdout_path)

    sys.stdout.flush()
    shown = os.fdopen(os.dup(1), "wb")  # this command's standard output: rank 0's alone
    os.dup2(2, 1)  # msrun's messages, its tail processes and log greps: with its warnings
    follower = _Follower(stdout_path, shown)
    follower.start()
    try:
        _process_manager(args).run()
    finally:
        follower.stop()
        shown.close()


# ---- in every process msrun starts -----------------------------------------------------------


def serve_cluster() -> None:
    """The scheduler: serve the cluster until every worker has finished (raises if one was lost)."""
    import mindspore as ms
    from mindspore.communication import init

    ms.set_device("CPU")  # the scheduler only coordinates (MindSpore uses mccl for it on any device)
    init()


def show_stdout() -> None:
    """Send rank 0's standard output to the file :func:`launch` copies to the user."""
    path = os.environ.get(STDOUT_ENV)
    if not path:
        return
    sys.stdout.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def run_process(argv: list[str]) -> None:
    """In a process msrun started: the scheduler serves the cluster, a worker runs ``SCRIPT ARGS``."""
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        serve_cluster()
        return
    if not argv:
        raise SystemExit("usage: msrun ... msrun.py SCRIPT [ARGS ...]")
    script, *args = argv
    if os.environ.get("RANK_ID") == "0":
        show_stdout()
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)  # as `python SCRIPT` has it (not this folder)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    if os.environ.get("MS_ROLE"):  # started by msrun as `python .../msrun.py SCRIPT ARGS`
        run_process(sys.argv[1:])
    else:  # `python -m zoo_mindspore.msrun MSRUN_ARGS`
        launch(sys.argv[1:])
