"""zoo's hook implementations for the MindSpore backend.

This module is what the ``zoo`` entry point loads to list backends, so it must not
import mindspore (importing it takes seconds): the factory imports
:mod:`zoo_mindspore.backend` only when called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zoo_core import hookimpl
from zoo_core.backend import Backend, BackendSpec, Device
from zoo_core.distributed import Launcher, LaunchPlan
from zoo_core.options import choice_option, threads_option
from zoo_mindspore.env import quiet_mindspore_logs

#: the script msrun runs in every process (see :mod:`zoo_mindspore.msrun`; not imported here)
MSRUN_ENTRY = Path(__file__).resolve().with_name("msrun.py")

#: the keys of ``backend_options.mindspore`` (checked by the core against this table)
OPTIONS = {
    "mode": choice_option(
        {"graph": "compiled training step, the default", "pynative": "eager, for debugging"}
    ),
    "threads": threads_option("MindSpore's CPU thread pool"),
    "optimizer": choice_option(
        {
            "adamw": "bias-corrected, as torch.optim.AdamW; the default",
            "adamweightdecay": "mindspore.nn.AdamWeightDecay, no bias correction, as MindSpore's TinyBERT",
        }
    ),
}


def create_backend(device: Device, options: Mapping[str, Any]) -> Backend:
    """The backend factory: imports mindspore, checks the device, applies the options."""
    quiet_mindspore_logs()  # before mindspore is first imported
    from zoo_mindspore.backend import MindSporeBackend

    return MindSporeBackend(device, options)


def launcher_command(plan: LaunchPlan) -> list[str]:
    """``msrun`` (through :mod:`zoo_mindspore.msrun`) starting ``plan.nproc`` workers on this machine.

    msrun gives each worker ``RANK_ID`` (its global rank: ``node_rank * nproc + local``)
    and ``DEVICE_ID`` (its local rank), starts the cluster's scheduler on the master's
    machine, writes the workers' logs to ``plan.log_dir`` and, with ``--join True``,
    waits for them and stops them all when one fails.
    """
    return [
        sys.executable,
        "-m",
        "zoo_mindspore.msrun",
        "--worker_num",
        str(plan.world_size),
        "--local_worker_num",
        str(plan.nproc),
        "--master_addr",
        plan.master_addr,
        "--master_port",
        str(plan.master_port),
        "--node_rank",
        str(plan.node_rank),
        "--log_dir",
        str(plan.log_dir),
        "--join",
        "True",
        str(MSRUN_ENTRY),
        str(plan.script),
        *plan.args,
    ]


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``mindspore`` backend.

    CPU, GPU and Ascend; fine-tuning, TinyBERT, DynaBERT width, MindIR and ONNX export,
    MindSpore ``.ckpt`` checkpoints (``zoo convert``); fp16 everywhere, bf16 on GPU and Ascend.
    """
    register(
        BackendSpec(
            name="mindspore",
            factory=create_backend,
            framework="mindspore",
            devices=("cpu", "gpu", "ascend"),
            capabilities=frozenset({"finetune", "distill", "width", "export", "convert"}),
            # no native INT8 on CPU or GPU (zoo export --quantize int8 writes onnx-int8/ all the same)
            lacks={
                "int8": "MindSpore Golden Stick PTQ is Ascend-only; see plugins/mindspore_backend/README.md"
            },
            options=OPTIONS,
            # fp16: the model's matmuls cast to float16 (zoo_mindspore.model), loss scaling by the
            # core.  MindSpore's CPU kernels have no bfloat16 MatMul, so bf16 on GPU and Ascend
            # only (which MindSpore supports there; neither is tested here)
            precisions={
                "cpu": ("fp32", "fp16"),
                "gpu": ("fp32", "bf16", "fp16"),
                "ascend": ("fp32", "bf16", "fp16"),
            },
            launcher=Launcher(launcher_command, rank_env="RANK_ID"),
        )
    )
