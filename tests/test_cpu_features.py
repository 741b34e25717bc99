"""bf16 / fp16 on a CPU that only emulates them: detected from /proc/cpuinfo, warned about, not refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RecipeWriter
from zoo_core import cpu_features
from zoo_core.cli.main import app
from zoo_core.cpu_features import cpu_flags, emulated_on_cpu, precision_warnings
from zoo_core.recipes.loader import load_recipe

runner = CliRunner()
ZEN3 = frozenset(
    ["fpu", "sse", "avx", "avx2", "fma", "f16c"]
)  # an AMD EPYC Zen 3: AVX2, no bf16/fp16 arithmetic
ZEN4 = ZEN3 | {"avx512f", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_bf16", "amx_tile", "avx512_fp16"}


@pytest.mark.parametrize(
    ("flags", "machine", "emulated"),
    [
        (ZEN3, "x86_64", {"bf16", "fp16"}),
        (ZEN4, "x86_64", {"fp16"}),
        (SAPPHIRE_RAPIDS, "x86_64", set()),
        (frozenset({"fp", "asimd", "asimdhp", "bf16"}), "aarch64", set()),
        (frozenset({"fp", "asimd"}), "aarch64", {"bf16", "fp16"}),
        (ZEN3, "riscv64", set()),  # no evidence on an unknown platform: no warning
    ],
)
def test_emulated_precisions_follow_the_cpu_flags(
    flags: frozenset[str], machine: str, emulated: set[str]
) -> None:
    assert {p for p in ("fp32", "bf16", "fp16") if emulated_on_cpu(p, flags, machine)} == emulated


def test_flags_are_read_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    monkeypatch.setattr(cpu_features, "CPUINFO", cpuinfo)
    cpu_flags.cache_clear()
    try:
        assert cpu_flags() == frozenset({"fpu", "avx2", "avx512_bf16"})
        cpuinfo.unlink()
        cpu_flags.cache_clear()
        assert cpu_flags() is None and not emulated_on_cpu("bf16")  # unreadable: no warning
    finally:
        cpu_flags.cache_clear()


@pytest.fixture
def avx2_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees an x86_64 CPU without bf16/fp16 arithmetic."""
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: ZEN3)
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: "x86_64")


def test_an_emulated_precision_is_warned_about_once_per_train_section(
    write_recipe: RecipeWriter, avx2_cpu: None
) -> None:
    recipe = load_recipe(write_recipe(train={"max_steps": 2, "precision": "bf16"}))
    (warning,) = precision_warnings(recipe)
    assert warning.startswith("warning: train.precision: bf16 on this CPU is emulated")
    assert "avx512_bf16" in warning and "use fp32 here" in warning
    assert precision_warnings(load_recipe(write_recipe(train={"max_steps": 2}))) == []


def test_validate_and_backends_say_so_without_failing(write_recipe: RecipeWriter, avx2_cpu: None) -> None:
    path = write_recipe(train={"max_steps": 2, "precision": "fp16"})
    result = runner.invoke(app, ["validate", str(path), "--backend", "torch"])
    assert result.exit_code == 0
    assert "warning: train.precision: fp16 on this CPU is emulated" in result.output
    listing = runner.invoke(app, ["backends"])
    assert listing.exit_code == 0
    assert "bf16~" in listing.output and "~ emulated on this CPU" in listing.output


def test_no_warning_where_the_cpu_has_bf16(
    write_recipe: RecipeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: "x86_64")
    path = write_recipe(train={"max_steps": 2, "precision": "bf16"})
    result = runner.invoke(app, ["validate", str(path), "--backend", "torch"])
    assert result.exit_code == 0 and "emulated" not in result.output
    assert "emulated" not in runner.invoke(app, ["backends"]).output


def test_int8_weights_get_seven_bits_only_on_x86_without_vnni() -> None:
    from zoo_core.cpu_features import saturates_int8

    assert saturates_int8(ZEN3, "x86_64")
    assert not saturates_int8(ZEN4, "x86_64") and not saturates_int8(SAPPHIRE_RAPIDS, "x86_64")
    assert not saturates_int8(frozenset({"avx2", "avx_vnni"}), "x86_64")
    assert not saturates_int8(frozenset({"fp", "asimd"}), "aarch64")


def test_a_precision_the_backend_lacks_gets_the_refusal_alone(
    write_recipe: RecipeWriter, avx2_cpu: None
) -> None:
    recipe = load_recipe(write_recipe(train={"max_steps": 2, "precision": "bf16"}))
    assert precision_warnings(recipe, "paddle") == []  # paddle refuses bf16 on cpu
    assert precision_warnings(recipe, "no-such-backend") == []
    assert len(precision_warnings(recipe, "torch")) == 1
