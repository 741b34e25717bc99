"""The script every data-parallel worker runs: ``python zoo_core/worker.py run RECIPE ...``.

A framework launcher started by ``zoo run --nproc`` runs this file once per rank
with :data:`~zoo_core.distributed.DATA_PARALLEL_ENV` set; it runs the ``zoo``
command line it is given.  Only rank 0 prints: the other ranks run quietly with
their standard output discarded.  Every rank's standard error (framework warnings,
tracebacks) goes to ``rank-<r>.log`` in the launch folder, since some launchers
echo a worker's stderr among rank 0's progress lines.  Any failure is also written
to the rank's error file, which the parent ``zoo run`` reports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zoo_core.distributed import LAUNCH_DIR_ENV, env_rank, record_error


def main(argv: list[str] | None = None) -> None:
    """Run the ``zoo`` command ``argv`` (default: this script's arguments) as one worker."""
    args = list(sys.argv[1:] if argv is None else argv)
    rank = env_rank()
    if os.environ.get(LAUNCH_DIR_ENV):
        log = open(Path(os.environ[LAUNCH_DIR_ENV]) / f"rank-{rank}.log", "a")  # noqa: SIM115
        os.dup2(log.fileno(), 2)  # the framework's C++ warnings too, not only Python's
    if rank not in (None, 0):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        if args[:1] == ["run"] and "--quiet" not in args:
            args.insert(1, "--quiet")
    from zoo_core.cli.main import app

    try:
        app(args=args, prog_name="zoo")
    except SystemExit:
        raise
    except BaseException as exc:  # the traceback still reaches the launcher's log
        record_error(f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
