"""Forecast the last 12 months of the airline-passengers series with the default Forecaster.

Holds out 1960, fits ``Forecaster(horizon=12)`` on 1949-1959, and prints sMAPE and MASE (season
m = 12) next to the seasonal-naive forecast (1959's values repeated).  Saves a plot of history,
holdout and forecast when matplotlib is installed.

    python examples/forecast_airline.py [--plot forecast_airline.png] [--no-progress]
"""

from __future__ import annotations

import argparse
import time

from numrnn import metrics
from numrnn.datasets import load_airline
from numrnn.forecast import Forecaster

HOLDOUT = 12  # months
SEASON = 12


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="forecast_airline.png", help="PNG to write ('' for none)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    y, dates = load_airline(return_dates=True)
    train, test = y[:-HOLDOUT], y[-HOLDOUT:]

    start = time.perf_counter()
    model = Forecaster(horizon=HOLDOUT, seed=args.seed).fit(train, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    forecast = model.predict(train)
    naive = metrics.seasonal_naive(train, HOLDOUT, m=SEASON)

    print(f"airline passengers: {len(train)} months to fit, last {HOLDOUT} held out; fit took {seconds:.1f} s")
    print(f"{'method':<22}{'sMAPE %':>9}{'MASE':>8}")
    for name, f in (("numrnn Forecaster", forecast), ("seasonal naive", naive)):
        print(f"{name:<22}{metrics.smape(test, f):>9.2f}{metrics.mase(test, f, train, m=SEASON):>8.3f}")

    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install 'numrnn[examples]')")
            return
        fig, ax = plt.subplots(figsize=(9, 4))
        x = dates.astype("datetime64[D]")
        ax.plot(x[:-HOLDOUT], train, color="0.3", label="history")
        ax.plot(x[-HOLDOUT:], test, color="k", lw=2, label="holdout (1960)")
        ax.plot(x[-HOLDOUT:], forecast, color="C1", lw=2, label="numrnn forecast")
        ax.plot(x[-HOLDOUT:], naive, color="C0", ls="--", label="seasonal naive")
        ax.set_ylabel("passengers (thousands)")
        ax.set_title("Airline passengers: 12-month forecast")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
