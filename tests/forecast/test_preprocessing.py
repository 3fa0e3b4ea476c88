"""The forecasters' scalers on their own: transform and inverse_transform undo each other, the
saved state round-trips, and a crafted state is refused naming the array."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn.forecast.preprocessing import ColumnScaler, SeriesScaler, safe_location_scale


def _data():
    rng = np.random.default_rng(0)
    y = np.stack([np.exp(rng.normal(size=40)), rng.normal(size=40)], axis=1)  # a positive and a signed column
    exog = rng.normal(3.0, 2.0, size=(40, 1))
    return y, exog


def test_safe_location_scale_matches_numpy_and_survives_extremes():
    y, _ = _data()
    mean, std, maxabs = safe_location_scale(y)
    np.testing.assert_allclose(mean, y.mean(0), rtol=1e-13)
    np.testing.assert_allclose(std, y.std(0), rtol=1e-13)
    np.testing.assert_array_equal(maxabs, np.abs(y).max(0))
    for factor in (1e300, 1e-300):
        _, std_big, _ = safe_location_scale(y * factor)
        np.testing.assert_allclose(std_big / factor, y.std(0), rtol=1e-12)


@pytest.mark.parametrize("transform, logged", [("auto", [True, False]), ("none", [False, False])])
def test_column_scaler_round_trip(transform, logged):
    y, exog = _data()
    scaler = ColumnScaler(transform).fit(y, exog, fit_end=30)
    assert scaler.log.tolist() == logged
    scaled = scaler.transform_values(y)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), y, rtol=1e-12)
    z = np.where(scaler.log, np.log(np.abs(y)), y)[:30]
    np.testing.assert_allclose(scaler.scale, z.std(0), rtol=1e-12)
    np.testing.assert_allclose(scaler.transform_exog(exog)[:30].std(), 1.0, rtol=1e-12)


def test_column_scaler_refuses_non_positive_values_of_a_log_column():
    y, exog = _data()
    scaler = ColumnScaler("auto").fit(y, exog, fit_end=30)
    bad = y.copy()
    bad[5, 0] = -1.0
    with pytest.raises(ValueError, match=r"strictly positive in column\(s\) \[0\]"):
        scaler.transform_values(bad)
    with pytest.raises(ValueError, match="transform='log' needs a strictly positive y"):
        ColumnScaler("log").fit(y, exog, fit_end=30)
    with pytest.raises(ValueError, match="transform must be one of"):
        ColumnScaler("sqrt")


def test_column_scaler_state_round_trips_and_is_checked():
    y, exog = _data()
    scaler = ColumnScaler("auto").fit(y, exog, fit_end=30)
    arrays = scaler.to_arrays()
    assert set(arrays) == scaler.array_names() == {"scaler/log", "scaler/scale", "scaler/exog_mean", "scaler/exog_std"}
    again = ColumnScaler.from_arrays(arrays, 2, 1, "auto")
    np.testing.assert_array_equal(again.transform_values(y), scaler.transform_values(y))
    np.testing.assert_array_equal(again.transform_exog(exog), scaler.transform_exog(exog))
    with pytest.raises(ValueError, match="'scaler/scale' must be positive"):
        ColumnScaler.from_arrays({**arrays, "scaler/scale": np.array([1.0, 0.0])}, 2, 1, "auto")
    with pytest.raises(ValueError, match="does not fit transform='none'"):
        ColumnScaler.from_arrays(arrays, 2, 1, "none")


def test_series_scaler_round_trip_and_fit_part():
    rng = np.random.default_rng(1)
    positive = np.exp(np.cumsum(rng.normal(0.0, 0.1, size=30)))
    signed = rng.normal(size=20)
    constant = np.full(5, 3.0)
    values = [positive, signed, constant]
    scaler = SeriesScaler("auto").fit(values)
    assert scaler.log.tolist() == [True, False, True]
    np.testing.assert_allclose(scaler.scale[:2], [np.mean(np.abs(np.diff(np.log(positive)))),
                                                  np.mean(np.abs(np.diff(signed)))])
    assert scaler.scale[2] == 0.01  # a constant log series falls back to 0.01
    scaled = scaler.transform_values(values)
    for i, series in enumerate(values):
        back = scaler.inverse_transform(np.stack([np.pad(s, (0, 30 - len(s))) for s in scaled]))[i, : len(series)]
        np.testing.assert_allclose(back, series, rtol=1e-12)
    part = SeriesScaler("auto").fit([signed], fit_lengths=[10])
    assert part.scale[0] == np.mean(np.abs(np.diff(signed[:10])))
    assert SeriesScaler("none").fit([positive]).log.tolist() == [False]
