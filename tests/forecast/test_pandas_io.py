"""pandas in and out of Forecaster (issue 13): a Series with a DatetimeIndex gives a Series
forecast indexed by the future dates, a DataFrame of numeric columns is the (n, k) model, and a
DataFrame with a non-numeric column is refused naming the column and its dtype."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from numrnn.forecast import Forecaster, backtest
from numrnn.forecast import pandas_io

pd = pytest.importorskip("pandas")

TINY = dict(lookback=8, horizon=4, hidden_size=4, epochs=3, ensemble=1, seed=0)


def _values(n=48):
    t = np.arange(n)
    return 10.0 + 0.1 * t + np.sin(2 * np.pi * t / 12)


@pytest.fixture(scope="module")
def monthly():
    index = pd.date_range("2000-01-31", periods=48, freq="ME")
    return pd.Series(_values(), index=index, name="sales")


def test_series_with_dates_gives_a_series_indexed_by_the_future_dates(monthly):
    f = Forecaster(**TINY).fit(monthly, progress=False)
    forecast = f.predict(monthly)
    assert isinstance(forecast, pd.Series) and forecast.name == "sales"
    expected = pd.date_range("2004-01-31", periods=4, freq="ME")
    assert forecast.index.equals(expected)
    # the same numbers as the array path
    g = Forecaster(**TINY).fit(monthly.to_numpy(), progress=False)
    np.testing.assert_array_equal(forecast.to_numpy(), g.predict(monthly.to_numpy()))


def test_series_index_without_freq_is_inferred_and_std_shares_the_index(monthly):
    y = pd.Series(monthly.to_numpy(), index=pd.DatetimeIndex(list(monthly.index)))  # freq dropped
    assert y.index.freq is None
    f = Forecaster(loss="gaussian", **TINY).fit(y, progress=False)
    forecast, std = f.predict(y, return_std=True)
    assert isinstance(std, pd.Series) and std.index.equals(forecast.index)
    assert forecast.index[0] == pd.Timestamp("2004-01-31") and (std.to_numpy() > 0).all()


def test_dataframe_is_the_multivariate_model_and_keeps_its_columns(monthly):
    frame = pd.DataFrame({"a": monthly.to_numpy(), "b": 2.0 * monthly.to_numpy() + 1.0}, index=monthly.index)
    f = Forecaster(**TINY).fit(frame, progress=False)
    assert f._fitted["n_targets"] == 2
    forecast = f.predict(frame)
    assert isinstance(forecast, pd.DataFrame) and list(forecast.columns) == ["a", "b"]
    assert forecast.shape == (4, 2) and forecast.index[0] == pd.Timestamp("2004-01-31")
    np.testing.assert_array_equal(forecast.to_numpy(), f.predict(frame.to_numpy()))


@pytest.mark.parametrize("column, values, dtype", [
    ("region", ["north"] * 48, "object"),
    ("when", pd.date_range("2000-01-01", periods=48), "datetime64[ns]"),
    ("kind", pd.Categorical(["x", "y"] * 24), "category"),
])
def test_dataframe_with_a_non_numeric_column_is_refused(monthly, column, values, dtype):
    frame = pd.DataFrame({"sales": monthly.to_numpy(), column: values}, index=monthly.index)
    with pytest.raises(ValueError, match=re.escape(f"column '{column}' of y has dtype {dtype}, expected a numeric")):
        Forecaster(**TINY).fit(frame, progress=False)
    with pytest.raises(ValueError, match=re.escape(f"column '{column}' of exog has dtype {dtype}")):
        Forecaster(**TINY).fit(monthly, exog=frame, progress=False)


def test_non_numeric_series_and_missing_values_are_refused(monthly):
    with pytest.raises(ValueError, match="y has dtype object, expected a numeric"):
        Forecaster(**TINY).fit(pd.Series(["1"] * 48), progress=False)
    with_na = monthly.astype("Float64").copy()
    with_na.iloc[3] = pd.NA
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        Forecaster(**TINY).fit(with_na, progress=False)


def test_future_index_of_other_indexes():
    assert pandas_io.future_index(pd.RangeIndex(10), 3).equals(pd.RangeIndex(10, 13))
    assert list(pandas_io.future_index(pd.Index([2000, 2005, 2010]), 2)) == [2015, 2020]
    assert list(pandas_io.future_index(pd.Index(["a", "b", "c"]), 2)) == [3, 4]
    periods = pd.period_range("2001Q1", periods=5, freq="Q")
    assert list(pandas_io.future_index(periods, 2)) == list(pd.period_range("2002Q2", periods=2, freq="Q"))
    irregular = pd.DatetimeIndex(["2000-01-01", "2000-01-02", "2000-01-05", "2000-01-06"])
    with pytest.raises(ValueError, match="DatetimeIndex without a frequency, and pandas cannot infer one"):
        pandas_io.future_index(irregular, 2)


def test_exog_frames_and_backtest_take_pandas(monthly):
    exog = pd.DataFrame({"month": monthly.index.month.astype(float)}, index=monthly.index)
    history, future = monthly.iloc[:-4], exog.iloc[-4:]
    f = Forecaster(**TINY).fit(history, exog=exog.iloc[:-4], progress=False)
    forecast = f.predict(history, exog=exog.iloc[:-4], exog_future=future)
    assert forecast.index.equals(monthly.index[-4:])
    folds = backtest(Forecaster(**TINY), monthly, folds=2, exog=exog)
    assert [fold["forecast"].shape for fold in folds] == [(4,), (4,)]


def test_import_numrnn_forecast_does_not_import_pandas():
    code = "import sys, numrnn, numrnn.forecast, numrnn.forecast.pandas_io; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
