"""Forecast the last 11 years of yearly sunspot activity with the default Forecaster.

Holds out 1998-2008 (about one solar cycle), fits ``Forecaster(horizon=11)`` on 1700-1997, and
prints sMAPE and MASE (season m = 11) next to the seasonal-naive forecast (the previous 11 years
repeated).  Saves a plot when matplotlib is installed.

    python examples/forecast_sunspots.py [--plot forecast_sunspots.png] [--no-progress]
"""

from __future__ import annotations

import argparse
import time

from numrnn import metrics
from numrnn.datasets import load_sunspots
from numrnn.forecast import Forecaster

HOLDOUT = 11  # years
SEASON = 11  # the solar cycle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="forecast_sunspots.png", help="PNG to write ('' for none)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    y, years = load_sunspots(return_dates=True)
    train, test = y[:-HOLDOUT], y[-HOLDOUT:]

    start = time.perf_counter()
    model = Forecaster(horizon=HOLDOUT, seed=args.seed).fit(train, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    forecast = model.predict(train)
    naive = metrics.seasonal_naive(train, HOLDOUT, m=SEASON)

    print(f"sunspots: {len(train)} years to fit, last {HOLDOUT} held out; fit took {seconds:.1f} s")
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
        x = years.astype(int) + 1970  # datetime64[Y] counts years from 1970
        shown = slice(-120, None)  # the last 120 years keep the cycles readable
        ax.plot(x[:-HOLDOUT][shown], train[shown], color="0.3", label="history")
        ax.plot(x[-HOLDOUT:], test, color="k", lw=2, label="holdout (1998-2008)")
        ax.plot(x[-HOLDOUT:], forecast, color="C1", lw=2, label="numrnn forecast")
        ax.plot(x[-HOLDOUT:], naive, color="C0", ls="--", label="seasonal naive")
        ax.set_ylabel("mean sunspot activity")
        ax.set_title("Sunspots: 11-year forecast")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
