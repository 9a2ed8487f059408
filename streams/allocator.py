"""How the worker tunes memory management: the C allocator and Python's collector.

**The C allocator.**
A worker holds long-lived numpy arrays (the join's ids and pending
predictions, growing with the traffic of the open windows) and allocates
short-lived ones of similar sizes for every batch and checkpoint. glibc serves
blocks below its *mmap threshold* from the main heap, and raises that
threshold on its own, up to 32 MiB, each time a mapped block is freed. After a
few checkpoints the short-lived arrays land in the heap between long-lived
ones, and the holes they leave are never returned to the system: measured
with 10⁶ events in one window, about 50 MiB of the worker's resident memory
was such free heap.

With the threshold fixed at 128 KiB, every block of that size or more is
mapped on its own and unmapped when freed, so resident memory follows what
the worker holds. The same run grew by 55 MiB instead of 104 MiB.

**The cyclic garbage collector.** Python runs a young-generation collection
every 700 container allocations by default, and a worker allocates several
per message (the decoded document, its event, the record): tens of
collections per batch, each walking the objects a batch still holds, and
older collections over the whole heap of the framework's objects. The
worker's hot path makes almost no reference cycles, so collecting every
50,000 allocations loses nothing and the worker applied 15 % more
predictions a second (16,833 → 19,420 in ``benchmarks.e2e_throughput``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter for the mmap threshold (``malloc.h``)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks of this size or more are mapped on their own (glibc's initial default)."""

ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
"""glibc's own setting; when it is set, glibc has applied it and it is left alone."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold so freed large blocks go back to the system.

    Returns
    -------
    bool
        True when the threshold was set; False off Linux, where the C library
        has no ``mallopt`` (not glibc) or refuses it, or when ``MALLOC_MMAP_THRESHOLD_``
        is in the environment (glibc then already uses that value).
    """
    if ENVIRONMENT_VARIABLE in os.environ or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)  # None: the process's own symbols, libc's among them
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in the C library %s: allocator left as it is", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


GC_THRESHOLDS = (50_000, 50, 100)
"""Young-generation allocations between collections, then the older generations' ratios."""


def relax_collector(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Collect reference cycles less often than Python's default (700, 10, 10)."""
    gc.set_threshold(*thresholds)
