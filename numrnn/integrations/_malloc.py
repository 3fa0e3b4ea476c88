"""glibc's mmap threshold on Dask workers: :func:`tune_worker_malloc`.

A leaf module (no numrnn imports, no dask): :mod:`numrnn.integrations.dask` exports it, and the
code that runs on workers (the warm-up plugin, the global fit's actors, ``forecast_many``'s
tasks) calls it from here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["MMAP_THRESHOLD", "tune_worker_malloc"]

#: The mmap threshold :func:`tune_worker_malloc` sets: glibc's own ceiling for its sliding
#: threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``, 32 MiB).
MMAP_THRESHOLD = 32 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


@functools.cache  # once per process: the environment it reads is the process's start-up one
def tune_worker_malloc():
    """Raise glibc's mmap threshold in this process when Dask's ``MALLOC_TRIM_THRESHOLD_`` fixed it.

    A process started with any ``MALLOC_*`` tunable set (Dask's nanny sets
    ``MALLOC_TRIM_THRESHOLD_=65536``) keeps glibc's mmap threshold at 128 KiB instead of letting
    it grow, so each NumPy array above it is a fresh ``mmap`` and its pages fault in on every
    allocation; the kernels' work buffers then cost 1.5x.  This calls
    ``mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)``, leaving the trim threshold (Dask's memory
    release) as it is.  Done once per process; later calls return the first result.

    Returns
    -------
    int or None
        The threshold set, or None where nothing was done: ``MALLOC_TRIM_THRESHOLD_`` unset, a
        user's own ``MALLOC_MMAP_THRESHOLD_`` set, or not Linux with glibc.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    return MMAP_THRESHOLD if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 else None
