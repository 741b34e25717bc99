"""zoo's hook implementations for the torch backend.

This module is what the ``zoo`` entry point loads to list backends, so it must not
import torch: the factory imports :mod:`zoo_torch.backend` only when called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from zoo_core import hookimpl
from zoo_core.backend import Backend, BackendSpec, Device
from zoo_core.distributed import Launcher, LaunchPlan
from zoo_core.options import flag_option, threads_option

#: the keys of ``backend_options.torch`` (checked by the core against this table)
OPTIONS = {
    "threads": threads_option("torch.set_num_threads"),
    "compile": flag_option("torch.compile the training forward"),
}


def create_backend(device: Device, options: Mapping[str, Any]) -> Backend:
    """The backend factory: imports torch, checks the device, applies the options."""
    from zoo_torch.backend import TorchBackend

    return TorchBackend(device, options)


def launcher_command(plan: LaunchPlan) -> list[str]:
    """``torch.distributed.run`` (torchrun) starting ``plan.nproc`` workers on this machine.

    It sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and ``OMP_NUM_THREADS=1`` for each
    worker, and stops every worker when one fails.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={plan.nproc}",
        f"--nnodes={plan.nnodes}",
        f"--node_rank={plan.node_rank}",
        f"--master_addr={plan.master_addr}",
        f"--master_port={plan.master_port}",
        str(plan.script),
        *plan.args,
    ]


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``torch`` backend (CPU, CUDA; fine-tune, TinyBERT, DynaBERT; ONNX, torch.export, INT8)."""
    register(
        BackendSpec(
            name="torch",
            factory=create_backend,
            framework="torch",
            devices=("cpu", "gpu"),
            capabilities=frozenset({"finetune", "export", "int8", "distill", "width", "convert"}),
            options=OPTIONS,
            # torch.autocast runs bf16 and fp16 on CPU (AVX-512 BF16 makes bf16 pay) and on CUDA
            precisions={device: ("fp32", "bf16", "fp16") for device in ("cpu", "gpu")},
            launcher=Launcher(launcher_command, rank_env="RANK"),
        )
    )
