"""Rolling-origin evaluation: refit a copy of a forecaster per fold (window) and score it.

:func:`backtest` does it for a :class:`~numrnn.forecast.Forecaster` and one series,
:func:`cross_validation` (:meth:`numrnn.forecast.GlobalForecaster.cross_validation`) for a
:class:`~numrnn.forecast.GlobalForecaster` and every series of a panel.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn import metrics as nmetrics
from numrnn.forecast import pandas_io
from numrnn.forecast.forecaster import Forecaster
from numrnn.forecast.panel import all_dates, as_panel, level_name, pandas

__all__ = ["backtest", "cross_validation"]


def backtest(forecaster, y, folds=3, exog=None, step=None, m=1, progress=False):
    """Rolling-origin evaluation: refit a copy of ``forecaster`` per fold and score its forecast.

    Fold i (of ``folds``) trains on ``y[:origin_i]`` and forecasts ``y[origin_i : origin_i +
    horizon]``, with ``origin_i = n - horizon - (folds - 1 - i) * step``: the last fold's forecast
    ends at the end of ``y``.

    Parameters
    ----------
    forecaster : Forecaster
        Its parameters are copied (it is not modified).
    y : array_like, shape (n,) or (n, k)
    folds : int, default 3
    exog : array_like, shape (n, m), optional
        Covariates; the future part of each fold is passed as ``exog_future``.
    step : int, optional
        Distance between origins; default ``horizon``.
    m : int, default 1
        Season for MASE.
    progress : bool, default False
        Progress bars while fitting.

    Returns
    -------
    list of dict
        Per fold: ``fold``, ``origin``, ``mae``, ``rmse``, ``smape``, ``mase`` and ``forecast``.
    """
    if not isinstance(forecaster, Forecaster):
        raise TypeError(f"forecaster must be a Forecaster, got {type(forecaster).__name__}")
    folds = check.check_int(folds, "folds", 1)
    horizon = forecaster.horizon
    step = horizon if step is None else check.check_int(step, "step", 1)
    y2, one_d = check.as_series(pandas_io.as_values(y, "y"), "y")
    n = y2.shape[0]
    ex = check.check_covariates(pandas_io.as_values(exog, "exog"), n) if exog is not None else None
    first_origin = n - horizon - (folds - 1) * step
    need = forecaster.lookback + horizon + forecaster._validation_windows()
    if first_origin < need:
        raise ValueError(
            f"y is too short for {folds} folds of step {step}: the first fold would train on {first_origin} "
            f"values, but the forecaster needs at least {need}"
        )
    y_in = y2[:, 0] if one_d else y2
    results = []
    for i in range(folds):
        origin = first_origin + i * step
        model = type(forecaster)(**forecaster.get_params())
        if ex is None:
            model.fit(y_in[:origin], progress=progress)
            forecast = model.predict(y_in[:origin])
        else:
            model.fit(y_in[:origin], exog=ex[:origin], progress=progress)
            forecast = model.predict(y_in[:origin], exog=ex[:origin], exog_future=ex[origin : origin + horizon])
        truth = y_in[origin : origin + horizon]
        results.append(
            {
                "fold": i,
                "origin": origin,
                "mae": nmetrics.mae(truth, forecast),
                "rmse": nmetrics.rmse(truth, forecast),
                "smape": nmetrics.smape(truth, forecast),
                "mase": nmetrics.mase(truth, forecast, y_in[:origin], m=m),
                "forecast": forecast,
            }
        )
    return results


def cross_validation(gf, data, n_windows=3, step_size=None, level=None, progress=False):
    """Rolling-origin evaluation of a GlobalForecaster ``gf`` over all series (``gf`` is not modified).

    See :meth:`numrnn.forecast.GlobalForecaster.cross_validation` for the parameters and the
    returned columns.
    """
    n_windows = check.check_int(n_windows, "n_windows", 1)
    h = gf.horizon
    step_size = h if step_size is None else check.check_int(step_size, "step_size", 1)
    levels = check.check_levels(level)
    panel = as_panel(data)
    pieces = []
    for w in range(n_windows):
        back = h + (n_windows - 1 - w) * step_size
        cut = [len(v) - back for v in panel.values]
        part = panel.subset([max(c, 0) for c in cut])
        if not part.keys:
            raise ValueError(f"cross-validation window {w} leaves no series: every series has at most {back} values")
        model = type(gf)(**gf.get_params())
        model.fit(part, progress=progress)
        q = model._quantiles(model._fitted, part, levels)  # the calibrated intervals, as predict() gives
        index = {k: i for i, k in enumerate(panel.keys)}
        for s, key in enumerate(part.keys):
            i = index[key]
            c = len(part.values[s])
            truth = panel.values[i][c : c + h]
            m = len(truth)
            if panel.dates is not None:
                dates = all_dates(panel.dates, i, len(panel.values[i]))
                ds, cutoff = dates[c : c + m], np.repeat(dates[c - 1], m)
            else:
                ds, cutoff = np.arange(c, c + m), np.repeat(c - 1, m)
            row = {"unique_id": [key] * m, "ds": ds, "cutoff": cutoff, "y": truth, "yhat": q[0, s, :m]}
            for k, lv in enumerate(levels):
                row[f"yhat-lo-{level_name(lv)}"] = q[1 + 2 * k, s, :m]
                row[f"yhat-hi-{level_name(lv)}"] = q[2 + 2 * k, s, :m]
            pieces.append(row)
    cols = {k: np.concatenate([np.asarray(p[k], dtype=object if k == "unique_id" else None) for p in pieces])
            for k in pieces[0]}
    if panel.source == "frame":
        return pandas().DataFrame(cols)
    return cols
