"""Forecast many series with one global model: fit, score against seasonal naive, plot intervals.

Run ``python examples/forecast_many.py``; writes ``forecast_many.png`` (needs matplotlib).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from numrnn import metrics  # noqa: E402
from numrnn.forecast import GlobalForecaster  # noqa: E402


def synthetic_panel(n_series=60, season=12, seed=0):
    """Positive seasonal series (sine + trend + noise) of 60-180 values."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        n = int(rng.integers(60, 181))
        t = np.arange(n)
        level = rng.uniform(20, 200)
        y = (level + rng.normal(0, 0.003) * level * t
             + rng.uniform(0.1, 0.3) * level * np.sin(2 * np.pi * t / season + rng.uniform(0, 2 * np.pi))
             + rng.uniform(0.02, 0.06) * level * rng.normal(size=n))
        out[f"series {i}"] = np.maximum(y, 1.0)
    return out


def main():
    h, m = 18, 12
    data = synthetic_panel(season=m)
    train = {k: v[:-h] for k, v in data.items()}
    test = {k: v[-h:] for k, v in data.items()}

    t0 = time.process_time()
    gf = GlobalForecaster(horizon=h, season_length=m, seed=0).fit(train, progress=True)
    fc = gf.predict(level=[80, 95])
    cpu = time.process_time() - t0

    rows = {"GlobalForecaster": {k: fc[k]["yhat"] for k in train},
            "seasonal naive": {k: metrics.seasonal_naive(train[k], h, m=m) for k in train}}
    print(f"\n{len(data)} series, horizon {h}; GlobalForecaster fit + predict: {cpu:.1f} CPU s")
    print(f"{'method':<18}{'MAE':>10}{'sMAPE':>10}{'MASE':>10}")
    for name, pred in rows.items():
        mae = np.mean([metrics.mae(test[k], pred[k]) for k in train])
        smape = np.mean([metrics.smape(test[k], pred[k]) for k in train])
        mase = np.mean([metrics.mase(test[k], pred[k], train[k], m=m) for k in train])
        print(f"{name:<18}{mae:>10.3f}{smape:>10.3f}{mase:>10.3f}")
    truth = np.concatenate([test[k] for k in train])
    for lv in (80, 95):
        lo = np.concatenate([fc[k][f"lo-{lv}"] for k in train])
        hi = np.concatenate([fc[k][f"hi-{lv}"] for k in train])
        print(f"{lv}% interval coverage: {np.mean((truth >= lo) & (truth <= hi)):.3f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, key in zip(axes.ravel(), list(data)[:4]):
        n = len(train[key])
        future = np.arange(n, n + h)
        ax.plot(np.arange(n + h), data[key], color="black", lw=1, label="actual")
        ax.fill_between(future, fc[key]["lo-95"], fc[key]["hi-95"], color="C0", alpha=0.2, label="95%")
        ax.fill_between(future, fc[key]["lo-80"], fc[key]["hi-80"], color="C0", alpha=0.35, label="80%")
        ax.plot(future, fc[key]["yhat"], color="C0", lw=1.5, label="forecast")
        ax.axvline(n - 0.5, color="grey", ls=":")
        ax.set_title(key)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig("forecast_many.png", dpi=100)
    print("saved forecast_many.png")


if __name__ == "__main__":
    main()
