"""NumrnnForecaster under sktime: its own conformance suite, and equality with Forecaster."""

import numpy as np
import pytest

pytest.importorskip("sktime")
pd = pytest.importorskip("pandas")

from numrnn.forecast import Forecaster  # noqa: E402
from numrnn.integrations.sktime import NumrnnForecaster  # noqa: E402

TINY = NumrnnForecaster.get_test_params()[0]


def _series(n=30):
    t = np.arange(n)
    index = pd.period_range("2000-01", periods=n, freq="M")
    return pd.Series(10 + np.sin(2 * np.pi * t / 12) + 0.05 * t, index=index, name="sales")


@pytest.mark.slow  # sktime's suite: about 25 CPU s, 70 s wall on the shared 2-core machine
def test_check_estimator():
    from sktime.utils.estimator_checks import check_estimator

    results = check_estimator(NumrnnForecaster, raise_exceptions=True)
    assert results and all(v == "PASSED" for v in results.values())


def test_predict_and_interval_equal_forecaster():
    y = _series()
    f = NumrnnForecaster(**TINY).fit(y, fh=[1, 2, 4])
    direct = Forecaster(horizon=4, loss="gaussian", **{k: v for k, v in TINY.items()}).fit(y.to_numpy(), progress=False)
    mean, std = direct.predict(y.to_numpy(), return_std=True)
    pred = f.predict()
    assert list(pred.index) == list(pd.period_range("2002-07", periods=4, freq="M")[[0, 1, 3]])
    np.testing.assert_array_equal(pred.to_numpy(), mean[[0, 1, 3]])
    interval = f.predict_interval(coverage=[0.8, 0.9])
    assert interval.columns.tolist() == [("sales", 0.8, "lower"), ("sales", 0.8, "upper"),
                                         ("sales", 0.9, "lower"), ("sales", 0.9, "upper")]
    z = 1.2815515655446004
    np.testing.assert_allclose(interval[("sales", 0.8, "lower")].to_numpy(), (mean - z * std)[[0, 1, 3]], rtol=1e-12)
    np.testing.assert_allclose(f.predict_var().to_numpy()[:, 0], (std**2)[[0, 1, 3]], rtol=1e-12)


def test_no_intervals_without_gaussian_and_bad_fh():
    y = _series()
    f = NumrnnForecaster(**dict(TINY, loss="mse"))
    assert f.get_tag("capability:pred_int") is False
    with pytest.raises(ValueError, match="hidden_size"):
        NumrnnForecaster(**dict(TINY, hidden_size=0)).fit(y, fh=[1])
    fitted = NumrnnForecaster(**TINY).fit(y, fh=[1, 2])
    with pytest.raises(ValueError, match="re-fit the forecaster"):  # sktime holds fh to fit's
        fitted.predict(fh=[3])
