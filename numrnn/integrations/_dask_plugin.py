"""The worker plugin :func:`numrnn.integrations.dask.prepare_workers` registers.

A module of its own because it subclasses ``distributed.WorkerPlugin`` and so imports
distributed; only ``prepare_workers`` imports it.
"""

from __future__ import annotations

from distributed import WorkerPlugin


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
        from numrnn.integrations.dask import _warm_up

        _warm_up(self.cells, self.dtypes)
