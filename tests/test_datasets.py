"""Bundled datasets load offline from package data with the documented shapes and dates."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn import datasets


def test_airline():
    y = datasets.load_airline()
    assert y.shape == (144,) and y.dtype == np.float64
    assert y[0] == 112.0 and y[-1] == 432.0
    y2, dates = datasets.load_airline(return_dates=True)
    np.testing.assert_array_equal(y, y2)
    assert dates.dtype == np.dtype("datetime64[M]")
    assert str(dates[0]) == "1949-01" and str(dates[-1]) == "1960-12"
    assert np.all(np.diff(dates).astype(int) == 1)


def test_sunspots():
    y, years = datasets.load_sunspots(return_dates=True)
    assert y.shape == (309,) and years.shape == (309,)
    assert str(years[0]) == "1700" and str(years[-1]) == "2008"
    assert y.min() == 0.0 and np.all(np.isfinite(y))


def test_co2_interpolates_or_drops():
    y, dates = datasets.load_co2(return_dates=True)
    assert y.shape == (2284,) and np.all(np.isfinite(y))
    assert str(dates[0]) == "1958-03-29" and str(dates[-1]) == "2001-12-29"
    assert np.all(np.diff(dates).astype(int) == 7)
    dropped, ddates = datasets.load_co2(return_dates=True, missing="drop")
    assert dropped.shape == (2225,) and ddates.shape == (2225,)
    # every kept week is unchanged by interpolation
    keep = np.isin(dates, ddates)
    np.testing.assert_array_equal(y[keep], dropped)
    # 1958-05-10 is missing: interpolated between 1958-05-03 and 1958-05-17
    i = int(np.flatnonzero(dates == np.datetime64("1958-05-10"))[0])
    assert y[i] == pytest.approx((y[i - 1] + y[i + 1]) / 2)


def test_provenance_note_and_bad_arguments():
    from importlib import resources

    note = resources.files("numrnn.datasets").joinpath("data", "README.md").read_text()
    assert "public domain" in note
    with pytest.raises(ValueError, match="missing must be"):
        datasets.load_co2(missing="zero")
    with pytest.raises(TypeError, match="return_dates must be a bool"):
        datasets.load_airline(return_dates="yes")
