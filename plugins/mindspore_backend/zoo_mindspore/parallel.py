"""Data parallelism in MindSpore: the cluster, the gradient reducer, and numbers averaged over ranks.

Workers are started by ``msrun`` (see :mod:`zoo_mindspore.msrun`), which gives each one
``RANK_ID``, ``DEVICE_ID`` (its local rank) and the scheduler's address.
:func:`join_process_group` calls ``mindspore.communication.init()`` once per process
and switches MindSpore to ``DATA_PARALLEL`` with ``gradients_mean``.  The trainers
average gradients with ``nn.DistributedGradReducer`` inside their compiled step, once
per optimizer step (after the last micro-batch, see :mod:`zoo_mindspore.train`).

On CPU (MindSpore's ``mccl``) the ``Barrier`` primitive has no kernel, so
:func:`barrier` all-reduces a scalar instead; ``ops.AllReduce`` runs both eagerly and
inside ``mindspore.jit`` graphs.
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

#: (rank, world size) once this process has joined the cluster
_joined: tuple[int, int] | None = None
#: the all-reduce (sum over every rank) used eagerly, made once
_all_reduce: ops.AllReduce | None = None


def join_process_group() -> None:
    """Join the cluster ``msrun`` set up, once per process (a worker may create several backends).

    Needs the device target set (``mindspore.set_device``) first.
    """
    global _joined
    if _joined is not None:
        return
    from mindspore.communication import get_group_size, get_rank, init

    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    _joined = (get_rank(), get_group_size())


def worker_threads() -> int | None:
    """The CPU thread count for a worker whose recipe sets none: ``OMP_NUM_THREADS``.

    ``msrun`` gives every worker ``OMP_NUM_THREADS=1`` unless the user set it (as
    torchrun does), so that N workers on N cores do not fight over them.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def rank() -> int:
    """This process's rank (0 outside a cluster)."""
    return 0 if _joined is None else _joined[0]


def world_size() -> int:
    """Processes in the cluster (1 outside one)."""
    return 1 if _joined is None else _joined[1]


def grad_reducer(params: list[Parameter]) -> nn.Cell | None:
    """``nn.DistributedGradReducer`` averaging gradients of ``params`` over the ranks; None alone."""
    if world_size() == 1:
        return None
    return nn.DistributedGradReducer(params, mean=True, degree=world_size())


def mean_over_ranks(values: Tensor) -> Tensor:
    """``values`` averaged over every rank (unchanged alone): a step's reported numbers."""
    global _all_reduce
    if world_size() == 1:
        return values
    if _all_reduce is None:
        _all_reduce = ops.AllReduce()
    return _all_reduce(values) / world_size()


def barrier() -> None:
    """Wait for every rank (nothing alone): a one-number all-reduce, read back on the host."""
    if world_size() > 1:
        mean_over_ranks(Tensor(np.zeros(1, np.float32))).asnumpy()
