"""Forecast metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn import metrics


def test_by_hand():
    y, f = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
    assert metrics.mae(y, f) == pytest.approx(4 / 3)
    assert metrics.rmse(y, f) == pytest.approx(np.sqrt(10 / 3))
    assert metrics.smape(y, f) == pytest.approx(200 / 3 * (1 / 3 + 0 + 3 / 5))
    train = np.array([1.0, 3.0, 2.0, 6.0])  # lag-1 changes 2, 1, 4 -> scale 7/3
    assert metrics.mase(y, f, train) == pytest.approx((4 / 3) / (7 / 3))
    assert metrics.mase(y, f, train, m=2) == pytest.approx((4 / 3) / 2.0)  # |2-1|, |6-3|


def test_smape_zero_over_zero_counts_as_zero():
    assert metrics.smape([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert metrics.smape([0.0], [1.0]) == 200.0


def test_two_dimensional_and_raw_values():
    y = np.array([[1.0, 10.0], [2.0, 20.0]])
    f = np.array([[1.0, 12.0], [3.0, 20.0]])
    np.testing.assert_allclose(metrics.mae(y, f, multioutput="raw_values"), [0.5, 1.0])
    assert metrics.mae(y, f) == pytest.approx(0.75)
    train = np.array([[0.0, 0.0], [1.0, 4.0], [2.0, 8.0]])
    np.testing.assert_allclose(metrics.mase(y, f, train, multioutput="raw_values"), [0.5, 0.25])
    assert isinstance(metrics.rmse([1.0], [2.0], multioutput="raw_values"), float)


def test_seasonal_naive():
    train = np.arange(10.0)
    np.testing.assert_array_equal(metrics.seasonal_naive(train, 5, m=3), [7, 8, 9, 7, 8])
    np.testing.assert_array_equal(metrics.seasonal_naive(train, 2), [9, 9])
    two = np.stack([train, -train], axis=1)
    assert metrics.seasonal_naive(two, 4, m=2).shape == (4, 2)
    # MASE of the in-sample seasonal naive on its own training data is 1 by construction
    y = np.sin(np.arange(40.0)) + np.arange(40.0) / 10
    f = y[:-12]
    assert metrics.mase(y[12:], f, y, m=12) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: metrics.mae([1.0, 2.0], [1.0]), ValueError, "y_pred must have the shape"),
        (lambda: metrics.mae([], []), ValueError, "must not be empty"),
        (lambda: metrics.mae([np.nan], [1.0]), ValueError, "y_true contains NaN"),
        (lambda: metrics.mae(np.ones((2, 2, 2)), np.ones((2, 2, 2))), ValueError, "1-D"),
        (lambda: metrics.mae(["a"], ["b"]), TypeError, "real numeric"),
        (lambda: metrics.mae([1.0], [1.0], multioutput="sum"), ValueError, "multioutput"),
        (lambda: metrics.mase([1.0], [1.0], [1.0, 1.0, 1.0]), ValueError, "undefined"),
        (lambda: metrics.mase([1.0], [1.0], [1.0, 2.0], m=2), ValueError, "longer than m=2"),
        (lambda: metrics.mase([1.0], [1.0], [1.0, 2.0], m=0), ValueError, "m must be >= 1"),
        (lambda: metrics.mase([1.0], [1.0], [1.0, 2.0], m=1.5), TypeError, "m must be an int"),
        (lambda: metrics.mase([1.0], [1.0], np.ones((3, 2))), ValueError, "trailing columns"),
        (lambda: metrics.seasonal_naive([1.0], 0), ValueError, "horizon must be >= 1"),
        (lambda: metrics.seasonal_naive([1.0], 2, m=3), ValueError, "at least m=3"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
