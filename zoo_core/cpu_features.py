"""Whether this CPU computes bf16 / fp16 natively, read from ``/proc/cpuinfo`` (no framework import).

Frameworks accept ``bf16`` and ``fp16`` on any CPU, but where the CPU has no instructions
for them they emulate the arithmetic, and training runs many times *slower* than fp32
(torch bf16 fine-tuning of MiniLM on a 2-core AMD EPYC Zen 3 without AVX512-BF16: 0.04x
fp32's samples/s, ``benchmarks/results/2026-12-04-zen3-precision.md``; on CPUs with
AVX512-BF16 or AMX it runs 1.4-1.7x faster than fp32).  The core warns before such a run
and ``zoo backends`` marks such precisions; nothing is refused, since the arithmetic is
the same (tests run bf16 and fp16 steps on any CPU).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: per precision, the CPU flags (any one suffices) that mean native arithmetic, by ``platform.machine()``
NATIVE_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "x86_64": {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")},
    "aarch64": {"bf16": ("bf16",), "fp16": ("asimdhp",)},
}
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The first CPU's feature flags (``flags`` on x86, ``Features`` on ARM); None if unknown."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_model() -> str:
    """The CPU's model name (``model name`` in /proc/cpuinfo; platform's guess elsewhere)."""
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def emulated_on_cpu(precision: str, flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """True when ``precision`` is known to have no native arithmetic on this CPU (fp32: never).

    Unknown platforms and unreadable flags give False: no warning without evidence.
    ``flags`` and ``machine`` default to this machine's (tests pass their own).
    """
    needed = NATIVE_FLAGS.get(machine or platform.machine(), {}).get(precision)
    have = cpu_flags() if flags is None else flags
    if needed is None or have is None:
        return False
    return not any(flag in have for flag in needed)


def saturates_int8(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """True on an x86 CPU without VNNI (``avx512_vnni``, ``avx_vnni`` or ``amx_int8``).

    There onnxruntime's int8 kernels multiply with ``pmaddubsw``, whose 16-bit sums can
    saturate with full 8-bit weights; onnxruntime advises 7-bit weights (``reduce_range``)
    on such machines.  Unknown flags or another architecture: False.
    """
    if (machine or platform.machine()) != "x86_64":
        return False
    have = cpu_flags() if flags is None else flags
    return have is not None and not any(f in have for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def emulation_warning(precision: str, where: str = "train.precision") -> str:
    """The one-line warning for ``precision`` on a CPU that only emulates it."""
    needed = NATIVE_FLAGS.get(platform.machine(), {}).get(precision, ())
    return (
        f"warning: {where}: {precision} on this CPU is emulated (its flags lack {' and '.join(needed)}): "
        f"expect training slower than fp32 (torch bf16 fine-tuning ran at 0.04x fp32 on an AVX2 CPU); "
        f"use fp32 here and {precision} where the CPU or device has it"
    )


def precision_warnings(recipe: object, backend: str | None = None) -> list[str]:
    """One warning per train section of ``recipe`` whose precision this CPU only emulates.

    With ``backend``, only for precisions it declares on the CPU (one it lacks, or an
    unknown backend, is refused instead, with no warning before the error).
    """
    from zoo_core.errors import ZooError
    from zoo_core.plugins import get_backend_spec
    from zoo_core.precision import train_sections

    if getattr(recipe, "device", None) != "cpu":
        return []
    try:
        declared = None if backend is None else get_backend_spec(backend).precisions_on("cpu")
    except ZooError:
        return []
    return [
        emulation_warning(train.precision, f"{where}.precision")
        for where, train in train_sections(recipe)
        if emulated_on_cpu(train.precision) and (declared is None or train.precision in declared)
    ]
