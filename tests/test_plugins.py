"""The plugin manager: in-process plugins, entry points, broken plugins, errors and the hook contract."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import pytest

import zoo_core
from zoo_core import hookspecs, plugins
from zoo_core.backend import BackendSpec, Device
from zoo_core.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    RecipeError,
    UnknownBackendError,
)
from zoo_core.options import Option
from zoo_core.plugins import (
    KNOWN_BACKENDS,
    broken_plugins,
    create_backend,
    get_backend_spec,
    get_plugin_manager,
    list_backends,
)

BROKEN = md.EntryPoint(name="broken", value="zoo_nonexistent_module_xyz", group="zoo")


@dataclass
class FakeBackend:
    """What the fake factory builds: just the arguments it was given."""

    device: Device
    options: dict[str, Any]
    name: str = "fake"


#: the fake backend's one option: ``threads``, default 1
FAKE_OPTIONS = {"threads": Option(1, "a positive integer", lambda v: isinstance(v, int) and v >= 1)}


@dataclass(eq=False)  # plugins must be hashable: pluggy keeps them in sets
class FakePlugin:
    """A throwaway plugin registered in-process; records every factory call."""

    calls: list[tuple[Device, dict[str, Any]]] = field(default_factory=list)
    fail_import: bool = False

    def factory(self, device: Device, options: Mapping[str, Any]) -> Any:
        if self.fail_import:
            raise ImportError("No module named 'fakeframework'")
        self.calls.append((device, dict(options)))
        return FakeBackend(device, dict(options))

    @zoo_core.hookimpl
    def zoo_register_backends(self, register: Callable[[BackendSpec], None]) -> None:
        register(
            BackendSpec(
                name="fake",
                factory=self.factory,
                framework="fakeframework",
                devices=("cpu", "gpu"),
                capabilities=frozenset({"finetune"}),
                install_hint="pip install zoo-fake",
                options=FAKE_OPTIONS,
            )
        )


@pytest.fixture
def fake() -> Iterator[tuple[pluggy.PluginManager, FakePlugin]]:
    """A fresh plugin manager with :class:`FakePlugin` registered; unregistered afterwards."""
    pm = get_plugin_manager()
    assert pm.get_plugins() == set()
    plugin = FakePlugin()
    pm.register(plugin, name="fake-plugin")
    yield pm, plugin
    pm.unregister(plugin)
    assert pm.get_plugin("fake-plugin") is None
    assert plugin not in pm.get_plugins()


@pytest.fixture
def with_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed entry points plus one whose module does not exist."""
    real = plugins._entry_points()
    monkeypatch.setattr(plugins, "_entry_points", lambda: {**real, "broken": BROKEN})


def assert_user_error(exc: BaseException, *fragments: str) -> None:
    """A one-line error with the CLI's usage exit code, containing every fragment."""
    message = str(exc)
    assert "\n" not in message, message
    assert exc.exit_code == 2  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---- in-process plugins ------------------------------------------------------------
def test_fake_plugin_spec_is_found(fake: tuple[pluggy.PluginManager, FakePlugin]) -> None:
    pm, plugin = fake
    spec = get_backend_spec("fake", pm)
    assert spec.name == "fake"
    assert spec.devices == ("cpu", "gpu")
    assert spec.capabilities == frozenset({"finetune"})
    assert plugin.calls == []  # finding a spec builds nothing


def test_fake_plugin_factory_gets_validated_options(fake: tuple[pluggy.PluginManager, FakePlugin]) -> None:
    pm, plugin = fake
    assert create_backend("fake", "cpu", pm=pm) == FakeBackend("cpu", {"threads": 1})
    assert create_backend("fake", "gpu", {"threads": 4}, pm=pm) == FakeBackend("gpu", {"threads": 4})
    assert plugin.calls == [("cpu", {"threads": 1}), ("gpu", {"threads": 4})]


def test_fake_plugin_rejects_bad_options(fake: tuple[pluggy.PluginManager, FakePlugin]) -> None:
    pm, plugin = fake
    with pytest.raises(RecipeError, match=r"backend_options\.fake\.bogus"):
        create_backend("fake", "cpu", {"bogus": True}, pm=pm)
    assert plugin.calls == []


def test_fake_plugin_unsupported_device(fake: tuple[pluggy.PluginManager, FakePlugin]) -> None:
    pm, plugin = fake
    with pytest.raises(DeviceUnavailableError) as exc:
        create_backend("fake", "ascend", pm=pm)
    assert_user_error(exc.value, "'fake'", "'ascend'", "cpu, gpu")
    assert plugin.calls == []


def test_factory_import_error_becomes_backend_unavailable(
    fake: tuple[pluggy.PluginManager, FakePlugin],
) -> None:
    pm, plugin = fake
    plugin.fail_import = True
    with pytest.raises(BackendUnavailableError) as exc:
        create_backend("fake", "cpu", pm=pm)
    assert_user_error(exc.value, "'fake'", "'fakeframework'", "pip install zoo-fake")


def test_fake_plugin_is_listed_as_in_process(fake: tuple[pluggy.PluginManager, FakePlugin]) -> None:
    pm, _ = fake
    listed = {b.spec.name: b for b in list_backends(pm)}
    assert "fake" in listed and "torch" in listed
    assert listed["fake"].plugin_distribution == "(registered in-process)"
    assert listed["fake"].framework_version is None  # no distribution "fakeframework"


def test_unregistered_plugin_is_gone() -> None:
    pm = get_plugin_manager()
    plugin = FakePlugin()
    pm.register(plugin)
    assert get_backend_spec("fake", pm).name == "fake"
    pm.unregister(plugin)
    with pytest.raises(UnknownBackendError, match="'fake'"):
        get_backend_spec("fake", pm)


# ---- errors ------------------------------------------------------------------------
def test_unknown_backend_lists_installed_and_known() -> None:
    with pytest.raises(UnknownBackendError) as exc:
        get_backend_spec("nope")
    installed = ", ".join(sorted(plugins._entry_points()))
    assert_user_error(exc.value, "'nope'", f"installed: {installed}", "known: torch, paddle, mindspore")


@pytest.mark.parametrize("name", ["zoo-fake-known", *KNOWN_BACKENDS])
def test_known_but_missing_backend_gives_install_hint(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever backends this environment has: a known name without an entry point gets its hint."""
    monkeypatch.setitem(KNOWN_BACKENDS, "zoo-fake-known", "pip install zoo-fake-known")
    real = plugins._entry_points()
    monkeypatch.setattr(plugins, "_entry_points", lambda: {n: ep for n, ep in real.items() if n != name})
    with pytest.raises(BackendUnavailableError) as exc:
        get_backend_spec(name)
    assert_user_error(exc.value, f"'{name}'", "not installed", KNOWN_BACKENDS[name])
    assert not isinstance(exc.value, UnknownBackendError)


def test_backend_errors_share_the_usage_exit_code() -> None:
    for cls in (BackendError, UnknownBackendError, BackendUnavailableError, DeviceUnavailableError):
        assert cls("x").exit_code == 2, cls


# ---- broken plugins ----------------------------------------------------------------
@pytest.mark.usefixtures("with_broken")
def test_broken_plugin_is_unavailable() -> None:
    with pytest.raises(BackendUnavailableError) as exc:
        get_backend_spec("broken")
    assert_user_error(exc.value, "'broken'", "zoo_nonexistent_module_xyz", "ModuleNotFoundError")


@pytest.mark.usefixtures("with_broken")
def test_broken_plugin_is_skipped_by_list_and_reported() -> None:
    names = [b.spec.name for b in list_backends()]
    assert "torch" in names
    assert "broken" not in names
    broken = broken_plugins()
    assert list(broken) == ["broken"]
    assert "\n" not in broken["broken"]
    assert "failed to import" in broken["broken"]
    assert "zoo_nonexistent_module_xyz" in broken["broken"]


def test_no_broken_plugins_installed() -> None:
    assert broken_plugins() == {}


# ---- the real torch plugin -----------------------------------------------------------
def test_list_backends_includes_torch() -> None:
    listed = {b.spec.name: b for b in list_backends()}
    torch = listed["torch"]
    assert torch.spec.devices == ("cpu", "gpu")
    assert "finetune" in torch.spec.capabilities
    assert torch.spec.framework == "torch"
    assert torch.plugin_distribution == "zoo-torch"
    assert torch.plugin_version == md.version("zoo-torch")
    assert torch.framework_version == md.version("torch")


def test_listing_backends_does_not_import_torch() -> None:
    code = (
        "import json, sys\n"
        "from zoo_core.plugins import get_backend_spec, list_backends\n"
        "names = [b.spec.name for b in list_backends()]\n"
        "spec = get_backend_spec('torch')\n"
        "print(json.dumps({'names': names, 'spec': spec.name,\n"
        "                  'imported': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "torch" in result["names"]
    assert result["spec"] == "torch"
    assert result["imported"] == []


# ---- the hook contract -------------------------------------------------------------
def all_hookspecs() -> list[Callable[..., Any]]:
    """Every function in :mod:`zoo_core.hookspecs` marked with ``@hookspec``."""
    return [obj for _, obj in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(obj, "zoo_spec")]


def test_hookspecs_are_registered_on_the_plugin_manager() -> None:
    specs = all_hookspecs()
    assert specs, "no hookspecs found"
    pm = get_plugin_manager()
    for spec in specs:
        assert spec.__name__.startswith("zoo_"), spec.__name__
        assert getattr(pm.hook, spec.__name__).spec is not None, spec.__name__


@pytest.mark.parametrize("spec", all_hookspecs(), ids=lambda s: s.__name__)
def test_hookspec_has_docstring_and_types(spec: Callable[..., Any]) -> None:
    assert (inspect.getdoc(spec) or "").strip(), f"{spec.__name__} has no docstring"
    signature = inspect.signature(spec)
    for param in signature.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{spec.__name__}({param.name}) untyped"
    assert signature.return_annotation is not inspect.Signature.empty, spec.__name__


@pytest.mark.parametrize("spec", all_hookspecs(), ids=lambda s: s.__name__)
def test_hookspec_is_used_in_tests(spec: Callable[..., Any]) -> None:
    """As datasette's test_plugin_hooks_have_tests: each hook name appears in some test file."""
    test_files = sorted(Path(__file__).parent.glob("**/test_*.py"))
    assert test_files
    users = [f.name for f in test_files if spec.__name__ in f.read_text(encoding="utf-8")]
    assert users, f"hook {spec.__name__} is not exercised by any test under tests/"
