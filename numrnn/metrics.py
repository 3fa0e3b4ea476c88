r"""Forecast accuracy metrics: MAE, RMSE, sMAPE (M4 definition) and MASE.

All functions take ``y_true`` and ``y_pred`` of the same shape, ``(h,)`` for one series or
``(h, k)`` for k series side by side.  With 2-D input the metric is computed per column and, by
default, averaged (``multioutput="uniform_average"``); ``multioutput="raw_values"`` returns the
k values.

Definitions, over a horizon of h values :math:`y_t` and forecasts :math:`\hat y_t`:

.. math::

    \text{MAE} &= \frac1h \sum |y_t - \hat y_t|, \qquad
    \text{RMSE} = \sqrt{\frac1h \sum (y_t - \hat y_t)^2} \\
    \text{sMAPE} &= \frac{200}{h} \sum \frac{|y_t - \hat y_t|}{|y_t| + |\hat y_t|}
    \quad\text{(M4 competition; in percent, 0..200; a term with } |y_t| + |\hat y_t| = 0
    \text{ counts as 0)} \\
    \text{MASE} &= \frac{\frac1h \sum |y_t - \hat y_t|}
    {\frac{1}{n-m} \sum_{t=m+1}^{n} |x_t - x_{t-m}|}

where :math:`x_1 .. x_n` is the training series and m the season (1 for none).  MASE below 1
means the forecast beats the in-sample seasonal-naive forecast; :func:`seasonal_naive` gives that
baseline forecast for the holdout.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check

__all__ = ["mae", "rmse", "smape", "mase", "seasonal_naive"]


def _as_series(name, value):
    """``value`` as a finite float64 array of shape (h,) or (h, k), h >= 1."""
    arr = check.as_real_array(value, name, dtype=np.float64, check_finite=False)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (h,) or 2-D (h, k), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    return check.check_finite_array(arr, name)


def _pair(y_true, y_pred):
    y_true = _as_series("y_true", y_true)
    y_pred = _as_series("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred must have the shape of y_true {y_true.shape}, got {y_pred.shape}")
    return y_true, y_pred


def _reduce(per_column, multioutput, ndim):
    if multioutput == "uniform_average":
        return float(np.mean(per_column))
    if multioutput == "raw_values":
        return per_column if ndim == 2 else per_column.reshape(())[()]
    raise ValueError(f"multioutput must be 'uniform_average' or 'raw_values', got {multioutput!r}")


def mae(y_true, y_pred, multioutput="uniform_average"):
    """Mean absolute error.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (h,) or (h, k)
        True and forecast values.
    multioutput : {"uniform_average", "raw_values"}
        Average the k per-column values, or return them.

    Returns
    -------
    float or ndarray of shape (k,)
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return _reduce(np.mean(np.abs(y_true - y_pred), axis=0), multioutput, y_true.ndim)


def rmse(y_true, y_pred, multioutput="uniform_average"):
    """Root mean squared error (parameters as :func:`mae`)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return _reduce(np.sqrt(np.mean((y_true - y_pred) ** 2, axis=0)), multioutput, y_true.ndim)


def smape(y_true, y_pred, multioutput="uniform_average"):
    """Symmetric mean absolute percentage error as defined by the M4 competition, in percent.

    ``200/h * sum(|y - f| / (|y| + |f|))``; terms where both are 0 count as 0.  Parameters as
    :func:`mae`.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    num = np.abs(y_true - y_pred)
    den = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return _reduce(200.0 * np.mean(ratio, axis=0), multioutput, y_true.ndim)


def mase(y_true, y_pred, y_train, m=1, multioutput="uniform_average"):
    """Mean absolute scaled error.

    The MAE of the forecast divided by the in-sample MAE of the seasonal-naive forecast
    (``x[t] - x[t - m]``) on the training series.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (h,) or (h, k)
        True and forecast values of the holdout.
    y_train : array_like, shape (n,) or (n, k)
        The series the forecast was made from (before the holdout); n > m.
    m : int, default 1
        Season length (12 for monthly data with a yearly season; 1 for none).
    multioutput : {"uniform_average", "raw_values"}
        As for :func:`mae`.

    Returns
    -------
    float or ndarray of shape (k,)

    Raises
    ------
    ValueError
        If the training series is constant at lag m (the scale is 0).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    y_train = _as_series("y_train", y_train)
    m = check.check_count(m, "m")
    if y_train.shape[1:] != y_true.shape[1:]:
        raise ValueError(
            f"y_train must have {y_true.shape[1:] or 'no'} trailing columns like y_true, got shape {y_train.shape}"
        )
    if y_train.shape[0] <= m:
        raise ValueError(f"y_train must be longer than m={m}, got length {y_train.shape[0]}")
    scale = np.mean(np.abs(y_train[m:] - y_train[:-m]), axis=0)
    if np.any(scale == 0):
        raise ValueError(f"MASE is undefined: the training series does not change at lag m={m}")
    return _reduce(np.mean(np.abs(y_true - y_pred), axis=0) / scale, multioutput, y_true.ndim)


def seasonal_naive(y_train, horizon, m=1):
    """The seasonal-naive forecast: repeat the last season of ``y_train``.

    ``forecast[i] = y_train[n - m + (i mod m)]``.

    Parameters
    ----------
    y_train : array_like, shape (n,) or (n, k)
        History, n >= m.
    horizon : int
        Number of steps to forecast, >= 1.
    m : int, default 1
        Season length (1: repeat the last value).

    Returns
    -------
    ndarray, shape (horizon,) or (horizon, k)
    """
    y_train = _as_series("y_train", y_train)
    m = check.check_count(m, "m")
    horizon = check.check_count(horizon, "horizon")
    n = y_train.shape[0]
    if n < m:
        raise ValueError(f"y_train must have at least m={m} values, got {n}")
    idx = n - m + (np.arange(horizon) % m)
    return y_train[idx].copy()
