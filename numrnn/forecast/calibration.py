"""The GlobalForecaster's interval calibration: one spread factor from held-out windows.

:func:`calibrate_spread` turns the ensemble's predictive mixtures on the validation windows and
the held-out values there into the factor :math:`c` (``GlobalForecaster.calibration_``), and
:func:`interval_probs` gives the mixture probabilities of the calibrated intervals; the
equations are step 7 of :mod:`numrnn.forecast.global_model`'s docstring.  A module of its own
so that the forecaster's file loader (:mod:`numrnn.forecast.persistence`) can check a saved
factor against :data:`CALIBRATION_RANGE` without importing the forecaster.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CALIBRATION_LEVELS", "CALIBRATION_RANGE", "calibrate_spread", "interval_probs", "mixture_cdf"]

_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")
#: The levels whose split-conformal factors make the calibration factor (geometric mean).
CALIBRATION_LEVELS = (0.5, 0.8, 0.95)
#: The range the calibration factor is clipped to.
CALIBRATION_RANGE = (0.05, 20.0)


def mixture_cdf(mu, sigma, y):
    """CDF of equal-weight Gaussian mixtures at ``y``: mu, sigma (M, ...), y (...) -> (...)."""
    from scipy.special import ndtr

    return np.mean(ndtr((y[None] - mu) / sigma), axis=0)


def calibrate_spread(mu, sigma, target):
    r"""The calibration factor of the mixtures ``(mu, sigma)`` on held-out ``target`` values.

    Parameters
    ----------
    mu, sigma : ndarray, shape (M, V, h)
        The members' means and standard deviations on the validation windows (normalised units).
    target : ndarray, shape (V, h)
        The held-out values there (normalised, relative to the seasonal anchor).

    Returns
    -------
    float
        :math:`c = (\prod_\lambda c_\lambda)^{1/3}`, the split-conformal factors
        :math:`c_\lambda` of the probit-scale residuals at the levels ``CALIBRATION_LEVELS``,
        clipped to ``CALIBRATION_RANGE`` (see :mod:`numrnn.forecast.global_model`'s docstring, step 7).
    """
    from scipy.special import ndtri

    with np.errstate(**_QUIET):
        central = np.abs(2.0 * mixture_cdf(mu, sigma, target) - 1.0).ravel()
    central = np.clip(np.where(np.isfinite(central), central, 1.0), 0.0, 1.0 - 2.0**-52)
    e = np.sort(ndtri(0.5 * (1.0 + central)))
    n = e.size
    logs = []
    for lam in CALIBRATION_LEVELS:
        rank = min(n, int(math.ceil((n + 1) * lam)))
        factor = e[rank - 1] / ndtri(0.5 * (1.0 + lam))
        logs.append(math.log(min(max(factor, CALIBRATION_RANGE[0]), CALIBRATION_RANGE[1])))
    return float(min(max(math.exp(sum(logs) / len(logs)), CALIBRATION_RANGE[0]), CALIBRATION_RANGE[1]))


def interval_probs(calibration, levels):
    """The mixture probabilities [0.5, lo_1, hi_1, lo_2, hi_2, ...] of the requested ``levels``
    (percent) under the calibration factor (None: 1, the mixture's own intervals)."""
    probs = [0.5]
    if calibration is None:
        for lv in levels:
            probs += [0.5 - lv / 200.0, 0.5 + lv / 200.0]
        return probs
    from scipy.special import ndtr, ndtri

    for lv in levels:
        z = calibration * float(ndtri(0.5 + lv / 200.0))
        probs += [float(ndtr(-z)), float(ndtr(z))]
    return probs
