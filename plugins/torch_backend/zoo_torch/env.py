"""Process settings for training with torch on a CPU (imports no torch).

glibc hands out blocks of 32 MiB and more (on this model: the word-embedding gradient, a
47 MiB ``[vocab, hidden]`` tensor made anew by every backward pass, and bf16 autocast's
larger temporaries) straight from the kernel with ``mmap``, and returns freed memory at the
top of the heap as soon as 128 KiB are free.  Either way the next training step faults
every page of those buffers in again.  :func:`keep_freed_memory` makes blocks up to 32 MiB
(glibc's largest allowed threshold) come from the heap and keeps freed heap memory in the
process (``mallopt``), so a step reuses the previous step's pages.  Measured on the
project's 2-core CPU (``benchmarks/precision_throughput.py``, fine-tuning MiniLM on SST-2):
bf16 training +6% samples/s, fp32 unchanged.  The cost: the process keeps its peak heap
instead of shrinking between steps (the peak is what a step needs anyway).  What PyTorch's
CPU tuning guides get by preloading jemalloc or tcmalloc, without a preload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: ``mallopt`` parameters (``<malloc.h>``)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems (4 MiB x sizeof(long))
MMAP_THRESHOLD = 32 * 2**20
#: freed heap memory the process keeps before giving it back to the kernel
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tune glibc's allocator as the module docstring says; True if it was done (Linux, glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
