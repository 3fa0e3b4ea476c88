"""How the CPU drivers split work: batch blocks (one per thread), the time index of
a row, fixed row chunks of the reductions, and single-threaded BLAS inside the kernels."""

from __future__ import annotations

import sys

import numba

from numrnn._jit import cpu_function
from numrnn.cells import sequence


time_index = cpu_function(sequence.time_index)


def batch_blocks(batch):
    """Number of row blocks for the parallel recurrence: one per Numba thread, at most ``batch``."""
    return max(1, min(batch, numba.get_num_threads()))


@cpu_function
def block_bounds(block, blocks, batch):
    """Rows ``[lo, hi)`` of ``block`` out of ``blocks`` near-equal blocks."""
    return block * batch // blocks, (block + 1) * batch // blocks


#: Fixed number of blocks for the products over all ``T*B`` rows (row blocks of the
#: input projection and ``dx``, column blocks of the weight gradients).  Fixed, not
#: the thread count, so that results are the same bits whatever the thread count.
PRODUCT_CHUNKS = 8

#: Memory for the partial sums of the products over all ``T*B`` rows: row chunks
#: beyond what this holds (at least 2) are not used.  Eight chunks of a large
#: LSTM's (2048, 768) gradient would hold 48 MiB.
PARTIAL_SUMS_MAX_BYTES = 4 << 20


#: Fewest rows in one chunk of :func:`partial_chunks`.
PARTIAL_CHUNK_MIN_ROWS = 32


@cpu_function
def partial_chunks(rows, values, itemsize):
    """Row chunks for a reduction over ``rows`` into ``values`` outputs: up to
    :data:`PRODUCT_CHUNKS`, fewer (not below 2) where their partial sums would pass
    :data:`PARTIAL_SUMS_MAX_BYTES`, and at least :data:`PARTIAL_CHUNK_MIN_ROWS` rows
    each (a chunk of a few rows costs its whole partial sum for little work).  It
    depends on the shapes only, so the result is the same bits whatever the thread
    count."""
    fit = max(2, PARTIAL_SUMS_MAX_BYTES // (values * itemsize))
    return max(1, min(PRODUCT_CHUNKS, fit, rows // PARTIAL_CHUNK_MIN_ROWS))


@cpu_function
def sum_partials(partial):
    """``partial.sum(axis=0)``, in chunk order (so the same bits whatever the thread count)."""
    out = partial[0].copy()
    for chunk in range(1, partial.shape[0]):
        out += partial[chunk]
    return out


_blas_controller = None
_openmp_scan = (-1, [])  # (len(sys.modules) when scanned, OpenMP library controllers)


def _openmp_libraries():
    """threadpoolctl controllers of the OpenMP runtimes loaded now (PyTorch's among
    them), rescanned only when modules were imported since the last scan."""
    global _openmp_scan
    loaded = len(sys.modules)
    if _openmp_scan[0] != loaded:
        from threadpoolctl import ThreadpoolController

        _openmp_scan = (loaded, ThreadpoolController().select(user_api="openmp").lib_controllers)
    return _openmp_scan[1]


def single_threaded_blas():
    """Context manager for numrnn's parallel kernels: BLAS on one thread inside, and
    every OpenMP runtime's thread count as the caller left it on exit.

    The kernels parallelise with Numba's ``prange`` (batch blocks, row chunks of
    the large products) and call BLAS inside those threads; a multi-threaded BLAS
    pool on top of Numba's would oversubscribe the cores (measured here: 2-core
    training steps 5-30x slower).  Uses threadpoolctl on the BLAS libraries loaded
    when first called (SciPy's OpenBLAS, which Numba calls).

    Numba's OpenMP threading layer sets the OpenMP thread count of the runtime it
    shares with other libraries when it launches, which undid
    ``torch.set_num_threads(1)`` in a process running both.  numrnn does not change
    another library's thread settings: the OpenMP thread counts found on entry are
    put back on exit.
    """
    global _blas_controller
    if _blas_controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS Numba uses before scanning)
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController().select(user_api="blas").lib_controllers
    return _SingleThreadedBlas(_blas_controller, _openmp_libraries())


class _SingleThreadedBlas:
    """What :func:`single_threaded_blas` returns: sets each BLAS library still above
    one thread to one, and back on exit, and restores the OpenMP runtimes' thread
    counts.  Nested uses find one thread and touch nothing (threadpoolctl's own
    ``limit`` re-queries every library on each call, which cost more than a small
    layer's whole forward)."""

    def __init__(self, libraries, openmp):
        self.libraries = libraries
        self.openmp = openmp
        self.restore = []
        self.openmp_threads = []

    def __enter__(self):
        self.restore = [(library, threads) for library in self.libraries if (threads := library.get_num_threads()) != 1]
        self.openmp_threads = [(library, library.get_num_threads()) for library in self.openmp]
        for library, _ in self.restore:
            library.set_num_threads(1)
        return self

    def __exit__(self, *exc_info):
        for library, threads in self.restore:
            library.set_num_threads(threads)
        for library, threads in self.openmp_threads:
            if library.get_num_threads() != threads:
                library.set_num_threads(threads)
        return False
