"""pandas in and out of :class:`numrnn.forecast.Forecaster`, without importing pandas.

A ``pd.Series`` is a univariate series and a ``pd.DataFrame`` of numeric columns a multivariate
one, (n, k), as arrays are.  Forecasts of pandas input come back indexed by the steps after the
input's index: the future dates of a ``DatetimeIndex`` (its ``freq``, else the frequency pandas
infers) or a ``PeriodIndex``, the next integers of an evenly spaced integer index, else the
positions ``n .. n + horizon - 1``.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["as_values", "future_index", "is_pandas", "wrap_forecast"]


def _loaded_pandas():
    return sys.modules.get("pandas")


def is_pandas(value):
    """Whether ``value`` is a pandas Series or DataFrame (pandas is not imported to find out)."""
    pd = _loaded_pandas()
    return pd is not None and isinstance(value, (pd.Series, pd.DataFrame))


def as_values(value, name):
    """``value`` as a NumPy array when it is a pandas Series or DataFrame, else ``value`` itself.

    Parameters
    ----------
    value : pandas.Series, pandas.DataFrame or array_like
    name : str
        The argument's name, for the messages.

    Returns
    -------
    ndarray of float64, shape (n,) for a Series or (n, k) for a DataFrame; missing values become
    NaN (which the array checks then refuse); anything else is returned unchanged.

    Raises
    ------
    ValueError
        For a column (or a Series) whose dtype is not numeric or bool, naming the column and its
        dtype: a frame of mixed columns is refused rather than fitted column by column.
    """
    if not is_pandas(value):
        return value
    pd = _loaded_pandas()
    columns = value.items() if isinstance(value, pd.DataFrame) else [(value.name, value)]
    for column, series in columns:
        if not pd.api.types.is_numeric_dtype(series.dtype):
            where = f"column {column!r} of {name}" if isinstance(value, pd.DataFrame) else name
            raise ValueError(
                f"{where} has dtype {series.dtype}, expected a numeric (int, float or bool) dtype: drop or "
                "encode the non-numeric columns before fitting"
            )
    return value.to_numpy(dtype=np.float64, na_value=np.nan)


def future_index(index, horizon, name="y"):
    """The index of the ``horizon`` steps after ``index`` (see the module docstring).

    Raises
    ------
    ValueError
        For a ``DatetimeIndex`` with no ``freq`` from which pandas cannot infer one.
    """
    pd = _loaded_pandas()
    n = len(index)
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq
        if freq is None and n >= 3:
            freq = pd.infer_freq(index)
        if freq is None:
            raise ValueError(
                f"{name} has a DatetimeIndex without a frequency, and pandas cannot infer one from its dates "
                f"(expected evenly spaced dates, at least 3, or index.freq set); got {n} date(s)"
            )
        return pd.date_range(start=index[-1], periods=horizon + 1, freq=freq)[1:]
    if isinstance(index, pd.PeriodIndex):
        return pd.period_range(start=index[-1] + 1, periods=horizon, freq=index.freq)
    if pd.api.types.is_integer_dtype(index.dtype) and n >= 2:
        steps = np.diff(index.to_numpy())
        if steps[0] > 0 and np.all(steps == steps[0]):
            step = int(steps[0])
            last = int(index[-1])
            return pd.RangeIndex(last + step, last + step * (horizon + 1), step)
    return pd.RangeIndex(n, n + horizon)


def wrap_forecast(values, like, horizon):
    """``values`` (horizon,) or (horizon, k) in the pandas type of ``like``, indexed by the future.

    A Series ``like`` gives a Series with its name; a DataFrame a DataFrame with its columns.
    """
    pd = _loaded_pandas()
    index = future_index(like.index, horizon)
    if isinstance(like, pd.DataFrame):
        return pd.DataFrame(values, index=index, columns=like.columns)
    return pd.Series(values, index=index, name=like.name)
