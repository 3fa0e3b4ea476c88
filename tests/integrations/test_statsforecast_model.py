"""NumrnnModel inside statsforecast's own StatsForecast (forecast, cross_validation, fit/predict)."""

import subprocess
import sys

import numpy as np
import pytest

from numrnn.forecast import Forecaster
from numrnn.integrations.statsforecast import NumrnnModel

OPTIONS = dict(lookback=6, hidden_size=4, epochs=3, ensemble=1, validation=0, batch_size=16, seed=3)


def _frame(pd, n_series=2, n=40):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_series):
        t = np.arange(n)
        y = 10 + i + np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2000-01-01", periods=n, freq="MS"), "y": y}))
    return pd.concat(frames, ignore_index=True)


def test_protocol_without_statsforecast():
    code = ("import sys, numrnn.integrations.statsforecast as m; "
            "assert 'statsforecast' not in sys.modules, sorted(k for k in sys.modules if 'statsforecast' in k)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_forecast_equals_forecaster_and_intervals():
    rng = np.random.default_rng(1)
    y = 5 + np.cumsum(0.1 * rng.normal(size=36))
    res = NumrnnModel(**OPTIONS).forecast(y, h=4, level=[80, 95], fitted=True)
    direct = Forecaster(horizon=4, loss="gaussian", **OPTIONS).fit(y, progress=False)
    mean, std = direct.predict(y, return_std=True)
    np.testing.assert_array_equal(res["mean"], mean)
    z80 = 1.2815515655446004
    np.testing.assert_allclose(res["lo-80"], mean - z80 * std, rtol=1e-12)
    np.testing.assert_allclose(res["hi-80"], mean + z80 * std, rtol=1e-12)
    assert np.all(res["lo-95"] < res["lo-80"]) and np.all(res["hi-95"] > res["hi-80"])
    assert res["fitted"].shape == (36,) and np.isnan(res["fitted"][:6]).all() and np.isfinite(res["fitted"][6:]).all()
    assert np.all(res["fitted-lo-80"][6:] < res["fitted"][6:])
    # fit + predict gives the same numbers; a fixed horizon truncates
    m = NumrnnModel(**OPTIONS).fit(y)
    np.testing.assert_array_equal(m.predict(4)["mean"], mean)
    fixed = NumrnnModel(horizon=4, **OPTIONS).fit(y)
    np.testing.assert_array_equal(fixed.predict(2)["mean"], mean[:2])
    with pytest.raises(ValueError, match="h must be <= horizon = 4"):
        fixed.predict(5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        NumrnnModel(hidden_size=0)
    with pytest.raises(TypeError, match="alias"):
        NumrnnModel(alias=3)
    with pytest.raises(ValueError, match="loss='gaussian'"):
        NumrnnModel(loss="mse", **OPTIONS).forecast(np.arange(30.0) + 1, h=2, level=[80])
    with pytest.raises(ValueError, match="y must be 1-D"):
        NumrnnModel(**OPTIONS).forecast(np.ones((30, 2)), h=2)
    with pytest.raises(ValueError, match="level must lie"):
        NumrnnModel(**OPTIONS).forecast(np.arange(30.0) + 1, h=2, level=[100])


def test_statsforecast_forecast_and_cross_validation():
    pd = pytest.importorskip("pandas")
    sf_module = pytest.importorskip("statsforecast")
    df = _frame(pd)
    sf = sf_module.StatsForecast(models=[NumrnnModel(alias="lstm", **OPTIONS)], freq="MS", n_jobs=1)
    fc = sf.forecast(df=df, h=4, level=[80])
    assert list(fc.columns) == ["unique_id", "ds", "lstm", "lstm-lo-80", "lstm-hi-80"]
    for uid, group in df.groupby("unique_id"):
        y = group["y"].to_numpy()
        expected = NumrnnModel(**OPTIONS).forecast(y, h=4, level=[80])
        got = fc[fc["unique_id"] == uid]
        np.testing.assert_allclose(got["lstm"].to_numpy(), expected["mean"], rtol=1e-12)
        np.testing.assert_allclose(got["lstm-lo-80"].to_numpy(), expected["lo-80"], rtol=1e-12)
        assert got["ds"].iloc[0] == group["ds"].iloc[-1] + pd.offsets.MonthBegin(1)
    cv = sf.cross_validation(df=df, h=3, n_windows=2, step_size=3)
    assert len(cv) == 2 * 2 * 3
    for (uid, cutoff), got in cv.groupby(["unique_id", "cutoff"]):
        group = df[df["unique_id"] == uid]
        y = group.loc[group["ds"] <= cutoff, "y"].to_numpy()
        expected = NumrnnModel(**OPTIONS).forecast(y, h=3)["mean"]
        np.testing.assert_allclose(got["lstm"].to_numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(got["y"].to_numpy(), group.loc[group["ds"] > cutoff, "y"].to_numpy()[:3])
    # statsforecast's fit / predict path
    fc2 = sf.fit(df=df).predict(h=4)
    np.testing.assert_allclose(fc2["lstm"].to_numpy(), fc["lstm"].to_numpy(), rtol=1e-12)
