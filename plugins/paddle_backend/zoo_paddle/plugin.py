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
from zoo_core.errors import RecipeError

#: the keys of ``backend_options.paddle`` and what each must be
OPTIONS = {
    "threads": "a positive integer (CPU math threads) or null for paddle's default",
    "to_static": "true or false (paddle.jit.to_static the training forward)",
}

#: the options' defaults; :func:`validate_options` fills them in
DEFAULTS: dict[str, Any] = {"threads": None, "to_static": False}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``backend_options.paddle`` and fill in defaults; raises :class:`RecipeError`."""
    problems = [
        f"backend_options.paddle.{key}: unknown option (known: {', '.join(OPTIONS)})"
        for key in options
        if key not in OPTIONS
    ]
    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        problems.append(f"backend_options.paddle.threads: expected {OPTIONS['threads']}, got {threads!r}")
    to_static = options.get("to_static", False)
    if not isinstance(to_static, bool):
        problems.append(
            f"backend_options.paddle.to_static: expected {OPTIONS['to_static']}, got {to_static!r}"
        )
    if problems:
        raise RecipeError(problems[0], problems)
    return {"threads": threads, "to_static": to_static}


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
            install_hint="pip install -e plugins/paddle_backend",
            validate_options=validate_options,
            launcher=Launcher(launcher_command, rank_env="PADDLE_TRAINER_ID"),
        )
    )
