"""Scale-out benchmark: the GlobalForecaster's data-parallel fit on a Dask LocalCluster.

Stand-alone (not an asv suite: it starts a cluster).  In one run, on
``LocalCluster(n_workers=2, threads_per_worker=1)`` set up by ``prepare_workers``, against this
process:

* **speed-up**: ``GlobalForecaster.fit`` on ``--n-series`` synthetic series in this process and
  with ``client=`` (``--shards`` shards of the pandas frame), for each of ``--batch-sizes`` and,
  on the cluster, each of ``--speed-local-steps``: median wall seconds, CPU seconds (this
  process plus the workers), seconds per optimiser step, the speed-up, and the largest relative
  parameter difference between the single-process fit and the cluster's ``local_steps=1`` fit;
* **round trip**: the per-step overhead, from a fit whose steps do almost no work (2 windows,
  hidden size 2): its wall seconds per round trip on the cluster minus in this process;
* **capacity**: the same arithmetic on one worker and on both at once, before and after the
  speed runs (on a shared machine the two workers may not get two cores);
* **local steps**: MASE (against the seasonal naive's in-sample scale) of the last ``horizon``
  values held out, and wall seconds, for ``local_steps`` = 1 and each of ``--local-steps``.

Run: ``python asv_benchmarks/scale_out_global.py --n-series 10000`` (``--help`` for the rest).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_out import _timed, make_frame  # noqa: E402  (the many-local-models benchmark's panel and timer)


def _fit(options, df, client=None, **kw):
    from numrnn.forecast import GlobalForecaster

    return GlobalForecaster(**options).fit(df, progress=False, client=client, **kw)


def _max_rel(a, b):
    out = 0.0
    for na, nb in zip(a._fitted["members"], b._fitted["members"]):
        sa, sb = na.state_dict(), nb.state_dict()
        out = max(out, max(float(np.max(np.abs(sa[k] - sb[k])) / (np.max(np.abs(sa[k])) + 1e-30)) for k in sa))
    return out


def speed(df, options, client, shards, repeats, batch_sizes, ks):
    """Median wall / CPU seconds of the fit here and on the cluster, for each batch size and
    each ``local_steps`` of ``ks``; the parameter gap to this process for ``local_steps=1``."""
    steps = options["epochs"] * options["steps_per_epoch"] * options["ensemble"]
    out = {}
    for batch_size in batch_sizes:
        opts = dict(options, batch_size=batch_size)
        runs = [("one_process", {})] + [(f"cluster_local_steps={k}", {"client": client, "shards": shards,
                                                                       "local_steps": k}) for k in ks]
        row, fits = {}, {}
        for name, kw in runs:
            walls, cpus = [], []
            for _ in range(repeats):
                gf, wall, cpu = _timed(lambda kw=kw: _fit(opts, df, **kw), client)
                walls.append(wall)
                cpus.append(cpu)
            fits[name] = gf
            row[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
                         "s_per_step": statistics.median(walls) / steps}
            if name != "one_process":
                row[name]["speedup"] = row["one_process"]["wall_s"] / row[name]["wall_s"]
        if "cluster_local_steps=1" in fits:
            row["max_rel_param_diff"] = _max_rel(fits["one_process"], fits["cluster_local_steps=1"])
        out[f"batch_size={batch_size}"] = row
    return out


def _burn(seed):
    """About 0.3 s of single-threaded arithmetic; its wall seconds."""
    t0 = time.perf_counter()
    a = np.random.default_rng(seed).normal(size=(300, 300))
    for _ in range(200):
        a = np.tanh(a @ a * 0.01)
    return time.perf_counter() - t0


def capacity(client, repeats=3):
    """What parallelism the machine gave the two workers during the run: the wall seconds of the
    same arithmetic on one worker, and on both at once (1.0x: two free cores; 2.0x: one)."""
    workers = sorted(client.scheduler_info()["workers"])
    one, both = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        client.gather([client.submit(_burn, 0, workers=workers[:1], pure=False)])
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.gather([client.submit(_burn, 0, workers=[w], pure=False) for w in workers])
        both.append(time.perf_counter() - t0)
    return {"one_worker_s": statistics.median(one), "both_workers_s": statistics.median(both),
            "slowdown_when_both": statistics.median(both) / statistics.median(one)}


def round_trip(df, options, client, shards, steps=60):
    """Per-step overhead: a fit of almost no work, per round trip, on the cluster minus here."""
    tiny = dict(options, hidden_size=2, batch_size=2, epochs=1, steps_per_epoch=steps, ensemble=1)
    small = df[df["unique_id"].isin(df["unique_id"].unique()[:50])]
    _fit(tiny, small)
    t0 = time.perf_counter()
    _fit(tiny, small)
    here = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    gf = _fit(tiny, small, client=client, shards=shards)
    there = (time.perf_counter() - t0) / gf._fitted["round_trips"]
    return {"one_process_s_per_step": here, "cluster_s_per_round_trip": there, "overhead_s": there - here,
            "shards": shards}


def _mase(gf, df, horizon, season, client, shards, k):
    """Mean MASE of the last ``horizon`` values of each series, fitted on the rest."""
    from numrnn import metrics

    last = df.groupby("unique_id")["ds"].transform("max")
    train, test = df[df["ds"] <= last - horizon], df[df["ds"] > last - horizon]
    gf.fit(train, progress=False, client=client, shards=shards, local_steps=k)
    fc = gf.predict(train).sort_values(["unique_id", "ds"])
    test = test.sort_values(["unique_id", "ds"])
    scores = []
    for (uid, t), (_, f) in zip(test.groupby("unique_id"), fc.groupby("unique_id")):
        y_train = train.loc[train["unique_id"] == uid, "y"].to_numpy()
        scores.append(metrics.mase(t["y"].to_numpy(), f["yhat"].to_numpy(), y_train, m=season))
    return float(np.mean(scores))


def local_steps(df, options, client, shards, ks, season):
    """MASE and wall seconds for local_steps = 1 and each k of ``ks``."""
    from numrnn.forecast import GlobalForecaster

    out = {}
    for k in [1, *ks]:
        gf = GlobalForecaster(**options)
        t0 = time.perf_counter()
        score = _mase(gf, df, options["horizon"], season, client, shards, k)
        out[f"local_steps={k}"] = {"mase": score, "wall_s": time.perf_counter() - t0,
                                   "epochs_run": gf.history_[0]["epochs_run"]}
    return out


def run(args):
    import distributed

    from numrnn.integrations.dask import numba_environ, prepare_workers

    options = dict(horizon=args.horizon, season_length=args.season, lookback=args.lookback,
                   hidden_size=args.hidden_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                   batch_size=args.batch_sizes[0], ensemble=1, seed=0)
    df = make_frame(args.n_series, args.length)
    report = {"n_series": args.n_series, "length": args.length, "options": options, "cpus": os.cpu_count(),
              "load_average_start": os.getloadavg()}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  env=numba_environ(args.cache_dir), silence_logs=40) as lc:
        with distributed.Client(lc) as client:
            prepare_workers(client, cache_dir=args.cache_dir)
            _fit(dict(options, epochs=1, steps_per_epoch=2), df.iloc[:600], client=client)  # warm both paths
            _fit(dict(options, epochs=1, steps_per_epoch=2), df.iloc[:600])
            report["capacity_before"] = capacity(client)
            report["speed"] = speed(df, options, client, args.shards, args.repeats, args.batch_sizes,
                                    args.speed_local_steps)
            report["capacity_after"] = capacity(client)
            report["round_trip"] = round_trip(df, options, client, args.shards)
            acc = dict(options, epochs=args.accuracy_epochs, batch_size=64, steps_per_epoch=40)
            small = df[df["unique_id"].isin(df["unique_id"].unique()[: args.accuracy_series])]
            report["local_steps"] = local_steps(small, acc, client, args.shards, args.local_steps, args.season)
    report["load_average_end"] = os.getloadavg()
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-series", type=int, default=10000)
    parser.add_argument("--length", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--lookback", type=int, default=24)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096],
                        help="windows per step of the timed fits (default 1024 4096)")
    parser.add_argument("--speed-local-steps", type=int, nargs="+", default=[1, 8],
                        help="local_steps of the timed cluster fits (default 1 8)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps-per-epoch", type=int, default=60)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; medians are reported")
    parser.add_argument("--local-steps", type=int, nargs="*", default=[4, 8])
    parser.add_argument("--accuracy-series", type=int, default=300)
    parser.add_argument("--accuracy-epochs", type=int, default=8)
    parser.add_argument("--cache-dir", default=None, help="shared NUMBA_CACHE_DIR (default: Numba's own)")
    print(json.dumps(run(parser.parse_args(argv)), indent=1))


if __name__ == "__main__":
    main()
