"""Benchmarks of ``numrnn.forecast.Forecaster``: fitting a model to a univariate series."""

import numpy as np

from .common import BACKENDS, CELLS, require_backend


def load_series():
    """The airline passengers series if numrnn ships it, else a seeded synthetic one of the same kind."""
    try:
        from numrnn.datasets import load_airline
    except ImportError:
        months = np.arange(144)
        rng = np.random.default_rng(0)
        trend = 100.0 + 2.5 * months
        season = 1.0 + 0.2 * np.sin(2.0 * np.pi * months / 12.0)
        return trend * season + rng.normal(0.0, 5.0, size=months.size)
    return load_airline()


class ForecasterSuite:
    """``Forecaster(...).fit(y)`` on the 144-month airline series, per cell and backend."""

    params = (CELLS, BACKENDS)
    param_names = ["cell", "backend"]
    # One fit (300 epochs at most, early stopping) takes seconds: one process, one call
    # per sample, at most 3 samples, no warm-up calls beyond the fit in setup.
    rounds = 1
    repeat = (1, 3, 30.0)
    number = 1
    warmup_time = 0.0
    timeout = 300

    def setup(self, cell, backend):
        require_backend(backend)
        try:
            import numrnn.forecast  # noqa: F401
        except ImportError as exc:
            raise NotImplementedError(f"numrnn.forecast is not available: {exc}") from exc
        self.y = load_series()
        # Compile (or load from the cache) the kernels the fit runs.
        self.time_forecaster_fit(cell, backend)

    def make(self, cell, backend):
        from numrnn.forecast import Forecaster

        return Forecaster(cell=cell, lookback=24, horizon=12, hidden_size=32, seed=0, backend=backend)

    def time_forecaster_fit(self, cell, backend):
        self.make(cell, backend).fit(self.y, progress=False)
