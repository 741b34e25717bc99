"""zoo's hook implementations for the PaddlePaddle backend.

This module is what the ``zoo`` entry point loads to list backends, so it must not
import paddle (importing it takes seconds): the factory imports
:mod:`zoo_paddle.backend` only when called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from zoo_core import hookimpl
from zoo_core.backend import Backend, BackendSpec, Device
from zoo_core.distributed import Launcher, LaunchPlan
from zoo_core.options import flag_option, threads_option

#: the keys of ``backend_options.paddle`` (checked by the core against this table)
OPTIONS = {
    "threads": threads_option("CPU math threads"),
    "to_static": flag_option("paddle.jit.to_static the training forward"),
}


def create_backend(device: Device, options: Mapping[str, Any]) -> Backend:
    """The backend factory: imports paddle, checks the device, applies the options."""
    from zoo_paddle.backend import PaddleBackend

    return PaddleBackend(device, options)


def launcher_command(plan: LaunchPlan) -> list[str]:
    """``paddle.distributed.launch`` starting ``plan.nproc`` workers on this machine.

    Each worker gets its global rank in ``PADDLE_TRAINER_ID`` (also ``PADDLE_GLOBAL_RANK``),
    the world size in ``PADDLE_TRAINERS_NUM`` and its output in ``log_dir/workerlog.<i>``
    (the launcher echoes rank 0's on its standard output); when one fails the launcher
    stops the others.  ``--devices`` is not passed: the launcher gives the i-th process
    the i-th visible accelerator (``CUDA_VISIBLE_DEVICES`` / ``NPU_VISIBLE_DEVICES``
    order) when it finds accelerators, and starts gloo workers when it finds none
    (``--devices`` on a machine without accelerators is an error).  ``--master`` and
    ``--rank`` (the machine's rank) matter only across machines: there the launcher's
    rendezvous server runs at ``--master`` on the rank-0 machine; on one machine the
    launcher picks its own port, so they are left out.
    """
    command = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        str(plan.nproc),
        "--nnodes",
        str(plan.nnodes),
    ]
    if plan.nnodes > 1:
        command += ["--master", f"{plan.master_addr}:{plan.master_port}", "--rank", str(plan.node_rank)]
    return [*command, "--log_dir", str(plan.log_dir), str(plan.script), *plan.args]


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the ``paddle`` backend: CPU, CUDA GPUs, Ascend NPUs; fine-tuning, TinyBERT, width, export."""
    register(
        BackendSpec(
            name="paddle",
            factory=create_backend,
            framework="paddlepaddle",
            devices=("cpu", "gpu", "ascend"),
            capabilities=frozenset({"finetune", "export", "distill", "width", "convert"}),
            # no native INT8 (zoo export --quantize int8 writes onnx-int8/ all the same)
            lacks={
                "int8": "Paddle 3.3 post-training quantization reads only pre-PIR programs; "
                "see plugins/paddle_backend/README.md INT8"
            },
            options=OPTIONS,
            # paddle.amp.auto_cast works on CUDA and custom devices (Ascend); on CPU it does nothing
            precisions={device: ("fp32", "bf16", "fp16") for device in ("gpu", "ascend")},
            launcher=Launcher(launcher_command, rank_env="PADDLE_TRAINER_ID"),
        )
    )
