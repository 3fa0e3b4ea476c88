"""Benchmarks of the Dask paths: the GlobalForecaster's data-parallel fit against one process.

A ``LocalCluster(n_workers=2, threads_per_worker=1)`` set up by ``prepare_workers`` is started
in ``setup``.  ``track_`` methods report the speed-up (one process's wall seconds over the
cluster's, medians of three fits each, run side by side) and the per-round-trip overhead; the
issue's target is 1.5x for the global fit on 10,000 series, measured in full by
``asv_benchmarks/scale_out_global.py``.  Skipped (``NotImplementedError``) where pandas or
distributed is not installed (asv's default environment: run with ``--python=same`` in a venv
with the ``dask`` extra).
"""

import statistics
import time

import numpy as np

from .global_forecast import synthetic_panel

OPTIONS = dict(horizon=6, season_length=12, lookback=24, hidden_size=32, epochs=1, steps_per_epoch=30,
               ensemble=1, seed=0)


def _median_wall(fn, repeats=3):
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


class GlobalFitOnDask:
    """``GlobalForecaster.fit(df, client=...)`` on 4,000 series, 30 steps of 4,096 windows."""

    params = [1, 8]
    param_names = ["local_steps"]
    timeout = 600
    unit = "x"
    number = 1
    repeat = 1

    def setup(self, local_steps):
        try:
            import distributed
            import pandas as pd
        except ImportError as exc:
            raise NotImplementedError(f"needs the dask and pandas extras: {exc}") from exc
        from numrnn.integrations.dask import numba_environ, prepare_workers

        panel = synthetic_panel(4000, length=60)
        self.df = pd.DataFrame({"unique_id": np.repeat(list(panel), 60), "ds": np.tile(np.arange(60), len(panel)),
                                "y": np.concatenate(list(panel.values()))})
        self.cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                                env=numba_environ(), silence_logs=40)
        self.client = distributed.Client(self.cluster)
        prepare_workers(self.client)
        self._fit(dict(OPTIONS, steps_per_epoch=2), client=self.client, shards=2)  # warm both paths
        self._fit(dict(OPTIONS, steps_per_epoch=2))

    def teardown(self, local_steps):
        self.client.close()
        self.cluster.close()

    def _fit(self, options, **kw):
        from numrnn.forecast import GlobalForecaster

        return GlobalForecaster(**options).fit(self.df, progress=False, **kw)

    def track_speedup(self, local_steps):
        options = dict(OPTIONS, batch_size=4096)
        here = _median_wall(lambda: self._fit(options))
        there = _median_wall(lambda: self._fit(options, client=self.client, shards=2, local_steps=local_steps))
        return here / there

    track_speedup.unit = "x"

    def track_round_trip_ms(self, local_steps):
        """Milliseconds a round trip adds: a fit of almost no work, per round (``local_steps`` steps),
        on the cluster minus here."""
        tiny = dict(OPTIONS, hidden_size=2, batch_size=2, steps_per_epoch=60)
        here = _median_wall(lambda: self._fit(tiny)) / 60
        t0 = time.perf_counter()
        gf = self._fit(tiny, client=self.client, shards=2, local_steps=local_steps)
        there = (time.perf_counter() - t0) / gf._fitted["round_trips"]
        return 1e3 * (there - here * local_steps)

    track_round_trip_ms.unit = "ms"
