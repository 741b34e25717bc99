"""The pluggy contract between zoo and its plugins.

Hooks are registration-style (as in ``simonw/llm``): each receives a ``register``
callback and calls it once per thing it contributes.  A plugin module implements
them with ``@zoo_core.hookimpl`` and must not import its framework at module level,
so that listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

from pluggy import HookimplMarker, HookspecMarker

from zoo_core.backend import BackendSpec

hookspec = HookspecMarker("zoo")
hookimpl = HookimplMarker("zoo")


@hookspec
def zoo_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register backends: call ``register(BackendSpec(...))`` once for each.

    The spec names the backend (the value users pass to ``--backend``), the
    framework distribution it wraps, the devices and capabilities it supports, and
    a factory that imports the framework only when called.
    """
