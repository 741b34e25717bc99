"""Data-parallel training: what the core and a backend agree on, and nothing framework-specific.

``zoo run RECIPE --nproc N`` does not spawn workers itself: it asks the backend's
:class:`Launcher` for the command line of the framework's own launcher
(``torch.distributed.run``, ``paddle.distributed.launch``, ``msrun``), prints it and
runs it.  Every worker it starts runs :mod:`zoo_core.worker` with the same recipe and
the environment variable :data:`DATA_PARALLEL_ENV` set to ``"1"``.  In a worker:

* the backend's factory joins the framework's process group (see :func:`requested`)
  and reports its ``rank`` and ``world_size``;
* the core gives every rank its shard of each global batch (``train_batches``:
  the same global order for the same seed, global batch = ``train.batch_size`` ×
  ``train.gradient_accumulation_steps`` × world size);
* the trainer averages gradients with the framework's data-parallel API (torch DDP,
  ``paddle.DataParallel``, MindSpore ``DATA_PARALLEL`` with ``gradients_mean``) and
  reports the loss averaged over ranks;
* every rank evaluates the whole dev split (the weights are the same everywhere, so
  the metric is the single-process metric); only rank 0 writes checkpoints, logs
  and progress, and ``Backend.barrier`` keeps the other ranks from reading a
  checkpoint before it is written;
* an error on a rank is written to ``$ZOO_LAUNCH_DIR/rank-<r>.error``; the launcher
  stops the other ranks and ``zoo run`` reports that rank's message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoo_core.backend import Device

#: set to "1" in every worker a launcher starts; the backend factory then joins the process group
DATA_PARALLEL_ENV = "ZOO_DATA_PARALLEL"
#: folder where each worker writes ``rank-<r>.error`` when it fails
LAUNCH_DIR_ENV = "ZOO_LAUNCH_DIR"
#: names the variable in which the backend's launcher gives each worker its global rank
RANK_ENV_ENV = "ZOO_RANK_ENV"
#: where to look when that is not set: the variables torch's, paddle's and MindSpore's launchers set
RANK_ENVS = ("RANK", "PADDLE_TRAINER_ID", "RANK_ID")


@dataclass(frozen=True)
class LaunchPlan:
    """What a launcher command must start: ``nproc`` workers on each of ``nnodes`` machines.

    Each worker runs ``python script *args``; ``log_dir`` is where a launcher that
    keeps per-worker logs should put them.
    """

    nproc: int
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    device: Device
    script: Path
    args: tuple[str, ...]
    log_dir: Path

    @property
    def world_size(self) -> int:
        """Workers over all machines."""
        return self.nproc * self.nnodes


@dataclass(frozen=True)
class Launcher:
    """How a backend starts data-parallel workers (``BackendSpec.launcher``).

    ``command(plan)`` returns the launcher's argv (it must not import the framework:
    it runs in the parent ``zoo run``, which stays framework-free); ``rank_env`` is the
    environment variable in which the launched workers find their global rank.
    """

    command: Callable[[LaunchPlan], list[str]]
    rank_env: str = "RANK"


def requested() -> bool:
    """True inside a worker started by ``zoo run --nproc``: the backend must join the process group."""
    return os.environ.get(DATA_PARALLEL_ENV) == "1"


def env_rank() -> int | None:
    """This worker's global rank as its launcher announced it, or None outside a launcher."""
    announced = os.environ.get(RANK_ENV_ENV)
    for name in (announced,) if announced else RANK_ENVS:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def error_file(rank: int | None) -> Path | None:
    """Where a failing worker of rank ``rank`` writes its one-line error, or None outside a launch."""
    folder = os.environ.get(LAUNCH_DIR_ENV)
    if not folder:
        return None
    return Path(folder) / f"rank-{'unknown' if rank is None else rank}.error"


def record_error(message: str) -> None:
    """Append ``message`` to this worker's error file (nothing outside a launch)."""
    path = error_file(env_rank())
    if path is not None:
        with path.open("a", encoding="utf-8") as f:
            f.write(message.rstrip("\n") + "\n")
