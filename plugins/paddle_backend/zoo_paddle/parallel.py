"""Data parallelism in paddle: the process group, ``paddle.DataParallel``, numbers averaged over ranks.

Workers are started by ``python -m paddle.distributed.launch`` (see
:mod:`zoo_paddle.plugin`), which gives each one ``PADDLE_TRAINER_ID`` (its global
rank), ``PADDLE_TRAINERS_NUM``, ``PADDLE_MASTER`` and, when it sees accelerators, the
device it owns (``FLAGS_selected_gpus`` / ``FLAGS_selected_npus``).  Gradients are
averaged by :class:`paddle.DataParallel`; a step with several backward passes
(micro-batches, DynaBERT widths) runs the forward passes of all but the last under
``no_sync`` so that the gradients are all-reduced once per step.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import paddle
import paddle.distributed as dist
from paddle import Tensor, nn

from zoo_core.backend import Device

#: every DataParallel reducer made in this process, kept alive until it ends (see :func:`data_parallel`)
_REDUCERS: list[object] = []


def join_process_group(device: Device) -> None:
    """Join the process group the launcher described (gloo on CPU), once per process.

    The launcher picks NCCL (GPU) or XCCL (Ascend) by itself when it finds accelerators;
    on a CPU run it picks gloo only when it finds none, so zoo asks for gloo itself (a
    CPU run on a GPU machine would otherwise all-reduce CPU tensors through NCCL).
    A launch of one process needs no group: paddle refuses to make one.
    """
    if dist.is_initialized() or dist.ParallelEnv().world_size < 2:
        return
    if device == "cpu":
        os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"
    dist.init_parallel_env()


def device_index(device: Device) -> int:
    """The index of the ``device`` accelerator the launcher gave this process (0 outside a launch, on CPU)."""
    if device == "cpu" or not dist.is_initialized():
        return 0
    return dist.ParallelEnv().device_id  # FLAGS_selected_gpus / FLAGS_selected_npus


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def data_parallel(layer: nn.Layer, find_unused_parameters: bool = False) -> paddle.DataParallel | None:
    """``layer`` in :class:`paddle.DataParallel` when there are several ranks, else None.

    Construction broadcasts rank 0's parameters; every parameter of ``layer`` (and
    only those) has its gradient averaged over the ranks in the backward pass of a
    forward made through the wrapper outside :func:`sync_if` ``(.., False)``.

    Paddle 3.3 never removes the gradient hooks a wrapper's reducer puts on the
    parameters: when a second trainer wraps the same parameters (the prediction stage
    after the intermediate one) and the first wrapper has been freed, its hooks run
    on a destroyed reducer (a "var_index < variable_locators_.size()" error or a
    segmentation fault).  So every reducer lives as long as the process; an idle one's
    hooks return at once.  Each holds a buffer the size of its parameters.
    """
    if world_size() == 1:
        return None
    wrapper = paddle.DataParallel(layer, find_unused_parameters=find_unused_parameters)
    _REDUCERS.append(wrapper._reducer)
    return wrapper


@contextlib.contextmanager
def sync_if(layer: paddle.DataParallel | None, sync: bool) -> Iterator[None]:
    """A forward inside this context has its backward all-reduce gradients only when ``sync`` is true.

    Paddle decides at the forward (``DataParallel.forward`` prepares the reducer), so
    the forward must be made inside; gradients of unsynchronised passes accumulate
    locally and are all-reduced with the next synchronised one.
    """
    if layer is not None and not sync:
        with layer.no_sync():
            yield
    else:
        yield


def mean_over_ranks(values: Tensor) -> Tensor:
    """``values`` averaged over every rank (unchanged alone): the step's reported numbers."""
    if world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)  # a sum
    return values / world_size()


def barrier() -> None:
    """Wait for every rank (nothing alone)."""
    if world_size() > 1:
        dist.barrier()
