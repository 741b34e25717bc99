"""Registers the ``numpy`` backend.  Imported by ``zoo backends``: must stay cheap to import."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zoo_core.backend import Backend, BackendSpec, Device
from zoo_core.hookspecs import hookimpl


def create_backend(device: Device, options: Mapping[str, Any]) -> Backend:
    """Build the backend; the heavy import happens here, not at module level."""
    from zoo_numpy.backend import NumpyBackend

    return NumpyBackend(device)


@hookimpl
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register ``numpy``: CPU only, no recipe kinds (it cannot train), so eval and predict only."""
    register(
        BackendSpec(
            name="numpy",
            factory=create_backend,
            framework="numpy",
            devices=("cpu",),
            capabilities=frozenset(),  # exactly the capability protocols NumpyBackend implements
            install_hint="pip install examples/zoo_numpy_backend",
        )
    )
