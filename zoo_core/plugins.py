"""The plugin manager: finds backend plugins through the ``zoo`` entry-point group.

Listing reads entry points and calls ``zoo_register_backends`` on each plugin's
module (which imports no framework).  Asking for one backend loads just that
entry point.  Errors come out as one-line :class:`BackendError` subclasses.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from zoo_core import hookspecs
from zoo_core.backend import Backend, BackendSpec, Device
from zoo_core.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    IncompatiblePluginError,
    UnknownBackendError,
    ZooError,
)
from zoo_core.options import validate_options
from zoo_core.precision import train_sections

ENTRY_POINT_GROUP = "zoo"

#: the backends this repository ships, with how to install each (the one place: their specs
#: leave ``install_hint`` empty); a third-party plugin says its own in its spec
KNOWN_BACKENDS: dict[str, str] = {
    name: f"pip install zoo-{name}  (from a clone: pip install -c constraints.txt -e plugins/{name}_backend)"
    for name in ("torch", "paddle", "mindspore")
}


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with zoo's hookspecs and no plugins loaded."""
    pm = pluggy.PluginManager("zoo")
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> dict[str, md.EntryPoint]:
    return {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP)}


def _install_hint(name: str) -> str:
    return KNOWN_BACKENDS.get(name, f"install the plugin that provides backend {name!r}")


@dataclass(frozen=True)
class InstalledBackend:
    """A backend as ``zoo backends`` shows it."""

    spec: BackendSpec
    plugin_distribution: str
    plugin_version: str
    framework_version: str | None


def collect_specs(pm: pluggy.PluginManager) -> dict[str, BackendSpec]:
    """Call ``zoo_register_backends`` on every registered plugin and gather the specs."""
    specs: dict[str, BackendSpec] = {}

    def register(spec: BackendSpec) -> None:
        specs[spec.name] = spec

    pm.hook.zoo_register_backends(register=register)
    return specs


def check_core_version(ep: md.EntryPoint) -> None:
    """Refuse a plugin whose distribution requires a zoo-core range the running core is not in.

    The range is the plugin's declared ``zoo-core`` requirement (its distribution
    metadata, e.g. ``zoo-core>=0.1,<0.2``); a plugin without a distribution (registered
    in-process) or without a range passes.  Raises :class:`IncompatiblePluginError`, one line.
    """
    dist = ep.dist
    if dist is None:
        return
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    import zoo_core

    for line in dist.requires or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != "zoo-core":
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if not requirement.specifier.contains(zoo_core.__version__, prereleases=True):
            raise IncompatiblePluginError(
                f"backend plugin {dist.name} {dist.version} ({ep.name!r}) requires "
                f"zoo-core{requirement.specifier} but zoo-core {zoo_core.__version__} is installed; "
                f"install a {dist.name} release made for zoo-core {zoo_core.__version__}"
            )


def _load_entry_point(pm: pluggy.PluginManager, ep: md.EntryPoint) -> None:
    if pm.get_plugin(ep.name) is not None:
        return
    check_core_version(ep)
    try:
        module = ep.load()
    except Exception as exc:
        raise BackendUnavailableError(
            f"backend plugin {ep.name!r} ({ep.value}) failed to import: "
            f"{type(exc).__name__}: {exc}; reinstall it: {_install_hint(ep.name)}"
        ) from None
    pm.register(module, name=ep.name)


def list_backends(pm: pluggy.PluginManager | None = None) -> list[InstalledBackend]:
    """Every installed backend, without importing any framework.

    Broken plugins are skipped here (``zoo backends`` reports them separately via
    :func:`broken_plugins`).
    """
    pm = pm or get_plugin_manager()
    eps = _entry_points()
    for entry_point in eps.values():
        try:
            _load_entry_point(pm, entry_point)
        except BackendUnavailableError:
            continue
    out = []
    for name, spec in sorted(collect_specs(pm).items()):
        ep = eps.get(name)
        dist = ep.dist.name if ep is not None and ep.dist is not None else "(registered in-process)"
        dist_version = ep.dist.version if ep is not None and ep.dist is not None else "-"
        try:
            fw_version: str | None = md.version(spec.framework)
        except md.PackageNotFoundError:
            fw_version = None
        out.append(InstalledBackend(spec, dist, dist_version, fw_version))
    return out


def broken_plugins() -> dict[str, str]:
    """Entry points in the ``zoo`` group that fail to import, with the error line."""
    broken = {}
    pm = get_plugin_manager()
    for ep in _entry_points().values():
        try:
            _load_entry_point(pm, ep)
        except BackendUnavailableError as exc:
            broken[ep.name] = str(exc)
    return broken


def get_backend_spec(name: str, pm: pluggy.PluginManager | None = None) -> BackendSpec:
    """The spec of backend ``name``, loading only that plugin's entry point.

    Plugins already registered on ``pm`` (tests register throwaway ones) are
    consulted first.
    """
    pm = pm or get_plugin_manager()
    specs = collect_specs(pm)
    if name in specs:
        return specs[name]
    eps = _entry_points()
    if name in eps:
        _load_entry_point(pm, eps[name])
        specs = collect_specs(pm)
        if name in specs:
            return specs[name]
        raise BackendUnavailableError(
            f"plugin {name!r} is installed but registers no backend of that name; "
            f"reinstall it: {_install_hint(name)}"
        )
    if name in KNOWN_BACKENDS:
        raise BackendUnavailableError(f"backend {name!r} is not installed: {KNOWN_BACKENDS[name]}")
    installed = sorted(set(eps) | set(specs))
    raise UnknownBackendError(
        f"unknown backend {name!r}; installed: {', '.join(installed) or 'none'}; "
        f"known: {', '.join(KNOWN_BACKENDS)}"
    )


def require_capability(name: str, capability: str) -> None:
    """Raise :class:`BackendError` unless backend ``name`` declares ``capability`` (e.g. ``"width"``)."""
    spec = get_backend_spec(name)
    if capability not in spec.capabilities:
        why = f": {spec.lacks[capability]}" if capability in spec.lacks else ""
        raise BackendError(
            f"backend {name!r} cannot run {capability} recipes "
            f"(it can: {', '.join(sorted(spec.capabilities)) or 'nothing yet'}){why}"
        )


def require_native_int8(name: str) -> None:
    """Raise :class:`BackendError` unless backend ``name`` declares ``int8`` (native INT8 export).

    Reads the spec only (no framework import), so ``zoo export`` refuses before any work;
    the message gives the plugin's reason (``BackendSpec.lacks["int8"]``) when it has one.
    """
    spec = get_backend_spec(name)
    if "int8" not in spec.capabilities:
        why = spec.lacks.get("int8", "the plugin does not declare the 'int8' capability")
        raise BackendError(f"backend {name!r} has no native INT8 export: {why}")


def require_precisions(name: str, device: Device, recipe: Any) -> None:
    """Raise :class:`BackendError` unless backend ``name`` trains in ``recipe``'s precisions on ``device``."""
    allowed = get_backend_spec(name).precisions_on(device)
    for where, train in train_sections(recipe):
        if train.precision not in allowed:
            raise BackendError(
                f"{where}.precision: backend {name!r} cannot train in {train.precision} on {device} "
                f"(it can: {', '.join(allowed)})"
            )


def create_backend(
    name: str,
    device: Device = "cpu",
    options: Mapping[str, Any] | None = None,
    pm: pluggy.PluginManager | None = None,
) -> Backend:
    """Build backend ``name`` on ``device``: imports its framework, nothing else.

    The one place ``options`` are validated (against ``BackendSpec.options``): the factory
    gets them cleaned, and the backend does not check them again.
    """
    spec = get_backend_spec(name, pm)
    if device not in spec.devices:
        raise DeviceUnavailableError(
            f"backend {name!r} does not support device {device!r} (it supports: {', '.join(spec.devices)})"
        )
    opts = validate_options(name, spec.options, options or {})
    try:
        return spec.factory(device, opts)
    except ZooError:
        raise
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} cannot import its framework {spec.framework!r}: {exc}; "
            f"install it: {spec.install_hint or _install_hint(name)}"
        ) from None
