"""Process settings that must be made before paddle is imported (imports no paddle).

Paddle's CPU wheels link Intel's MKL, which picks slow generic kernels on AMD CPUs
unless ``MKL_DEBUG_CPU_TYPE=5`` is set before the library loads; on this project's
AMD EPYC machine that doubles Paddle's CPU training speed.  :func:`prepare_paddle_env`
sets it on AMD CPUs when the user has not set it, and logs that it did.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger("zoo_paddle")

MKL_VARIABLE = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2 = "5"


def is_amd_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when ``cpuinfo`` (Linux) names an AMD processor; False when unknown."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return False


def prepare_paddle_env(environ: dict[str, str] | None = None, amd: bool | None = None) -> bool:
    """Set ``MKL_DEBUG_CPU_TYPE=5`` on AMD CPUs unless already set; True if it was set now.

    Must run before the first ``import paddle`` to have any effect; when paddle is
    already imported, it only warns (in the log) that the setting comes too late.
    """
    env = os.environ if environ is None else environ
    if MKL_VARIABLE in env or not (is_amd_cpu() if amd is None else amd):
        return False
    if "paddle" in sys.modules and environ is None:
        logger.warning(
            "paddle was imported before zoo_paddle: set %s=%s yourself for fast MKL kernels on AMD CPUs",
            MKL_VARIABLE,
            MKL_AVX2,
        )
        return False
    env[MKL_VARIABLE] = MKL_AVX2
    logger.info(
        "AMD CPU: set %s=%s so MKL uses its AVX2 kernels (export it to override)", MKL_VARIABLE, MKL_AVX2
    )
    return True
