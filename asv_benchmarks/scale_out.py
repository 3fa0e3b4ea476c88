"""Scale-out benchmark: many local models on a Dask LocalCluster against one process.

Stand-alone (not an asv suite: it starts clusters).  In one run it measures

* ``forecast_many`` over ``--n-series`` synthetic series in this process (Dask's synchronous
  scheduler) and on ``LocalCluster(n_workers=2, threads_per_worker=1)`` set up by
  ``prepare_workers``: median wall seconds and CPU seconds (this process plus the workers),
  and the speed-up; the two results are checked equal;
* the per-task overhead: the median round trip of one empty task, and the per-task cost of
  ``--n-series`` empty tasks mapped at once;
* a cold worker: with the shared cache filled (by ``prepare_workers``), a new one-worker
  cluster's start and its first fit (import numrnn, load the kernels, fit one series).

Run: ``python asv_benchmarks/scale_out.py --n-series 1000`` (``--help`` for the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np


def make_frame(n_series, length, seed=0):
    """A long ``unique_id, ds, y`` frame of noisy seasonal series."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(length)
    y = (10 + rng.uniform(0, 5, (n_series, 1)) + np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6, (n_series, 1)))
         + 0.1 * rng.normal(size=(n_series, length)))
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:05d}" for i in range(n_series)], length),
                         "ds": np.tile(t, n_series), "y": y.reshape(-1)})


def _cpu_seconds():
    return time.process_time()


def _timed(fn, client=None):
    """``(result, wall seconds, CPU seconds of this process and the client's workers)``."""
    workers_before = client.run(_cpu_seconds) if client is not None else {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if client is not None:
        after = client.run(_cpu_seconds)
        cpu += sum(after[w] - workers_before.get(w, 0.0) for w in after)
    return result, wall, cpu


def _noop(i):
    return i


def _first_fit(horizon, options):
    """On a fresh worker: import numrnn and fit one small series (what a cold worker pays).

    Returns the seconds and the compile notices numrnn logged (none when the cache served all).
    """
    import logging

    notices = []

    class _Notices(logging.Handler):
        def emit(self, record):
            notices.append(record.getMessage())

    logging.getLogger("numrnn").addHandler(_Notices())
    t0 = time.perf_counter()
    from numrnn.forecast import Forecaster

    y = 10 + np.sin(np.arange(60) / 2.0)
    Forecaster(horizon=horizon, **options).fit(y, progress=False).predict(y)
    return time.perf_counter() - t0, notices


def overhead(client, n_tasks, repeats=20):
    """Median seconds of one empty task's round trip, and per task of ``n_tasks`` mapped at once."""
    client.submit(_noop, -1, pure=False).result()
    trips = []
    for i in range(repeats):
        t0 = time.perf_counter()
        client.submit(_noop, i, pure=False).result()
        trips.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    client.gather(client.map(_noop, range(n_tasks), pure=False))
    return statistics.median(trips), (time.perf_counter() - t0) / n_tasks


def cold_worker(env, horizon, options):
    """Seconds to start a one-worker cluster, and its first fit from the filled cache."""
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=env, silence_logs=40) as cluster, Client(cluster) as client:
        start = time.perf_counter() - t0
        first, notices = client.submit(_first_fit, horizon, options, pure=False).result()
    return start, first, notices


def run(args):
    """Measure and return a dict of the numbers (also printed as JSON)."""
    from distributed import Client, LocalCluster

    from numrnn.integrations.dask import forecast_many, numba_environ, prepare_workers

    options = dict(lookback=args.lookback, hidden_size=args.hidden_size, epochs=args.epochs, ensemble=1,
                   validation=0, batch_size=32, seed=0)
    df = make_frame(args.n_series, args.length)
    forecast_many(df.head(args.length), args.horizon, **options)  # compile / load in this process
    local = [_timed(lambda: forecast_many(df, args.horizon, **options)) for _ in range(args.repeats)]
    env = numba_environ(args.cache_dir)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=env, silence_logs=40) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        states = prepare_workers(client, cache_dir=args.cache_dir)
        prepare_s = time.perf_counter() - t0
        forecast_many(df.head(args.length), args.horizon, client=client, **options)
        dist = [_timed(lambda: forecast_many(df, args.horizon, client=client, **options), client)
                for _ in range(args.repeats)]
        trip, per_task = overhead(client, args.n_series)
    expected = local[0][0]
    for got, _, _ in dist:
        assert got["unique_id"].astype(str).tolist() == expected["unique_id"].astype(str).tolist()
        np.testing.assert_array_equal(got["yhat"].to_numpy(), expected["yhat"].to_numpy())
    start_s, first_fit_s, notices = cold_worker(env, args.horizon, options)
    local_wall = statistics.median(w for _, w, _ in local)
    dist_wall = statistics.median(w for _, w, _ in dist)
    return {
        "n_series": args.n_series, "length": args.length, "options": options,
        "one_process": {"wall_s": local_wall, "cpu_s": statistics.median(c for _, _, c in local)},
        "cluster_2x1": {"wall_s": dist_wall, "cpu_s": statistics.median(c for _, _, c in dist),
                        "prepare_workers_s": prepare_s,
                        "worker_warmup_s": {w: round(s["warmup_s"], 3) for w, s in states.items()}},
        "speedup": local_wall / dist_wall,
        "per_task_overhead": {"round_trip_s": trip, "mapped_per_task_s": per_task},
        "cold_worker": {"cluster_start_s": start_s, "first_fit_s": first_fit_s,
                        "compile_notices": notices},
        "cpu_count": os.cpu_count(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-series", type=int, default=1000, help="local models to fit (default 1000)")
    parser.add_argument("--length", type=int, default=60, help="values per series (default 60)")
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--lookback", type=int, default=12)
    parser.add_argument("--hidden-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; medians are reported")
    parser.add_argument("--cache-dir", default=None, help="shared NUMBA_CACHE_DIR (default: Numba's own)")
    args = parser.parse_args(argv)
    for name in ("n_series", "length", "horizon", "lookback", "hidden_size", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
