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

Fixing the threshold does nothing for smaller blocks: objects between
Python's own limit (512 bytes) and the threshold, such as message values,
the dicts of a batch's events and pieces of checkpoints, come from glibc's
heap, and glibc gives memory back on its own only from the top of the heap,
so pages freed below a block still in use stay with the process.
:func:`trim_heap` (``malloc_trim``) hands back every free page wherever it
is. The worker calls it after each round of checkpoints, every few seconds:
in ``benchmarks.e2e_throughput``'s memory run each call returned 2 to 7 MiB
and took about 2.5 ms (up to about 25 ms on a larger, fragmented heap).

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
import functools
import gc
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter for the mmap threshold (``malloc.h``)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks of this size or more are mapped on their own (glibc's initial default)."""

ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
"""glibc's own setting; when it is set, glibc has applied it and it is left alone."""


def _libc_function(name: str) -> Any:
    """A function of the C library, or None off Linux or where the library lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    library = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(library)  # None: the process's own symbols, libc's among them
        return getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        log.debug("no %s in the C library %s: allocator left as it is", name, library)
        return None


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold so freed large blocks go back to the system.

    Returns
    -------
    bool
        True when the threshold was set; False off Linux, where the C library
        has no ``mallopt`` (not glibc) or refuses it, or when ``MALLOC_MMAP_THRESHOLD_``
        is in the environment (glibc then already uses that value).
    """
    if ENVIRONMENT_VARIABLE in os.environ:
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up once (None where there is none)."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``).

    Returns
    -------
    bool
        Whether any memory was returned; False also where the C library has
        no ``malloc_trim`` (off Linux, or not glibc).
    """
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


GC_THRESHOLDS = (50_000, 50, 100)
"""Young-generation allocations between collections, then the older generations' ratios."""


def relax_collector(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Collect reference cycles less often than Python's default (700, 10, 10)."""
    gc.set_threshold(*thresholds)
