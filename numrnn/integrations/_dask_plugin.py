"""The worker plugin :func:`numrnn.integrations.dask.prepare_workers` registers.

A module of its own because it subclasses ``distributed.WorkerPlugin`` and so imports
distributed; only ``prepare_workers`` imports it.  It also holds the warm-up that
``prepare_workers`` runs on the workers, so it imports nothing of numrnn.integrations.dask.
"""

from __future__ import annotations

import os

from distributed import WorkerPlugin

#: What :func:`warm_up` found on this worker process, for ``prepare_workers``' report.
WORKER_STATE = {}


def warm_up(cells, dtypes):
    """On a worker: run :func:`numrnn.warmup` and record what the worker looks like to Numba."""
    import time

    import numba

    import numrnn
    from numrnn.integrations._malloc import tune_worker_malloc

    threshold = tune_worker_malloc()
    start = time.perf_counter()
    report = numrnn.warmup(cells=cells, dtypes=dtypes, progress=False)
    WORKER_STATE.update(
        numba_num_threads=int(numba.config.NUMBA_NUM_THREADS),
        cache_dir=report.cache_dir,
        warmup_s=time.perf_counter() - start,
        mmap_threshold=threshold,
        pid=os.getpid(),
    )
    return dict(WORKER_STATE)


def worker_state():
    return dict(WORKER_STATE)


class NumrnnWorkerPlugin(WorkerPlugin):
    """Runs :func:`numrnn.warmup` once on each worker as it starts (and on workers that join or
    restart later), loading the kernels from the shared Numba cache once it is filled.

    Parameters
    ----------
    cells, dtypes
        As for :func:`numrnn.warmup` (default: the LSTM in float32, the Forecaster's default).
    """

    name = "numrnn-warmup"

    def __init__(self, cells=("lstm",), dtypes=("float32",)):
        self.cells = cells
        self.dtypes = dtypes

    def setup(self, worker):
        """Warm this worker up; what it did is kept for ``prepare_workers``' report."""
        warm_up(self.cells, self.dtypes)
