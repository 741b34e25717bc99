"""Data parallelism in torch: the process group, DDP, and numbers averaged over ranks.

Workers are started by ``torch.distributed.run`` (see :mod:`zoo_torch.plugin`), which
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
Gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`; a
step with several backward passes (micro-batches, DynaBERT widths) runs all but the
last under ``no_sync`` so that DDP all-reduces once per step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from zoo_core.backend import Device


def join_process_group(device: Device) -> None:
    """Join the process group the launcher set up (gloo on CPU, NCCL on GPU), once per process."""
    if dist.is_initialized():
        return
    if device == "gpu":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device == "gpu" else "gloo")


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def data_parallel(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` wrapped in DDP when there are several ranks, else ``module`` itself."""
    if world_size() == 1:
        return module
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


@contextlib.contextmanager
def sync_if(module: nn.Module, sync: bool) -> Iterator[None]:
    """Forward and backward inside this context all-reduce gradients only when ``sync`` is true."""
    if isinstance(module, DistributedDataParallel) and not sync:
        with module.no_sync():
            yield
    else:
        yield


def mean_over_ranks(values: Tensor) -> Tensor:
    """``values`` averaged over every rank (unchanged alone): the step's reported numbers."""
    if world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world_size()
    return values


def barrier() -> None:
    """Wait for every rank (nothing alone)."""
    if world_size() > 1:
        dist.barrier()
