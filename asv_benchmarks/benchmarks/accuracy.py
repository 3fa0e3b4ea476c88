"""Accuracy tracked like speed: the default ``Forecaster``'s MASE on a fixed, visible panel.

The panel is the two series numrnn ships (``numrnn.datasets``), each with its last season held
out, exactly as README's "Accuracy on the holdout" table and ``examples/forecast_airline.py`` /
``forecast_sunspots.py`` score them: ``Forecaster(horizon=h, seed=0)`` with every other option
at its default, fitted on the rest.

==========  =====================  ============  ==================
series      holdout                season ``m``  README (seed 0)
==========  =====================  ============  ==================
airline     last 12 months (1960)  12            MASE 0.528
sunspots    last 11 years          11            MASE 0.604
==========  =====================  ============  ==================

A rise in ``track_mase`` (or in ``track_mase_ratio``, the MASE over seasonal naive's MASE; below
1 beats it) is an accuracy regression, and shows on the dashboard like a slowdown.  Each series
is fitted once per run, in ``setup_cache``; the ``track_`` methods only score the forecasts.
"""

import numpy as np

#: series -> (loader name in numrnn.datasets, holdout length = horizon, season m)
PANEL = {
    "airline": ("load_airline", 12, 12),
    "sunspots": ("load_sunspots", 11, 11),
}


def _forecasts():
    import numrnn.datasets
    from numrnn.forecast import Forecaster

    out = {}
    for name, (loader, horizon, season) in PANEL.items():
        y = getattr(numrnn.datasets, loader)()
        train, test = y[:-horizon], y[-horizon:]
        model = Forecaster(horizon=horizon, seed=0, backend="cpu").fit(train, progress=False)
        out[name] = {"train": train, "test": test, "forecast": np.asarray(model.predict(train)), "m": season}
    return out


class ForecasterAccuracySuite:
    """MASE of the default ``Forecaster`` per series of the panel (lower is better)."""

    params = list(PANEL)
    param_names = ["series"]
    timeout = 600

    def setup_cache(self):
        try:
            import numrnn.forecast  # noqa: F401
        except ImportError as exc:
            raise NotImplementedError(f"numrnn.forecast is not available: {exc}") from exc
        return _forecasts()

    setup_cache.timeout = 600

    def track_mase(self, results, series):
        from numrnn import metrics

        r = results[series]
        return float(metrics.mase(r["test"], r["forecast"], r["train"], m=r["m"]))

    track_mase.unit = "MASE"

    def track_mase_ratio(self, results, series):
        from numrnn import metrics

        r = results[series]
        naive = metrics.seasonal_naive(r["train"], len(r["test"]), m=r["m"])
        ours = metrics.mase(r["test"], r["forecast"], r["train"], m=r["m"])
        return float(ours / metrics.mase(r["test"], naive, r["train"], m=r["m"]))

    track_mase_ratio.unit = "MASE / seasonal naive's"
