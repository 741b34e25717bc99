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
from zoo_core.errors import RecipeError

#: the keys of ``backend_options.torch`` and what each must be
OPTIONS = {
    "threads": "a positive integer (torch.set_num_threads) or null for torch's default",
    "compile": "true or false (torch.compile the training forward)",
}

#: the options' defaults; :func:`validate_options` fills them in
DEFAULTS: dict[str, Any] = {"threads": None, "compile": False}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``backend_options.torch`` and fill in defaults; raises :class:`RecipeError`."""
    problems = [
        f"backend_options.torch.{key}: unknown option (known: {', '.join(OPTIONS)})"
        for key in options
        if key not in OPTIONS
    ]
    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        problems.append(f"backend_options.torch.threads: expected {OPTIONS['threads']}, got {threads!r}")
    compile_ = options.get("compile", False)
    if not isinstance(compile_, bool):
        problems.append(f"backend_options.torch.compile: expected {OPTIONS['compile']}, got {compile_!r}")
    if problems:
        raise RecipeError(problems[0], problems)
    return {"threads": threads, "compile": compile_}


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
    """Register the ``torch`` backend (CPU, CUDA; fine-tune, TinyBERT, DynaBERT; ONNX, torch.export)."""
    register(
        BackendSpec(
            name="torch",
            factory=create_backend,
            framework="torch",
            devices=("cpu", "gpu"),
            capabilities=frozenset({"finetune", "export", "distill", "width", "convert"}),
            install_hint="pip install -e plugins/torch_backend",
            validate_options=validate_options,
            launcher=Launcher(launcher_command, rank_env="RANK"),
        )
    )
