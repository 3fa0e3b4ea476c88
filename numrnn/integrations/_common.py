"""Helpers the adapters share: building the wrapped :class:`~numrnn.forecast.Forecaster` and
turning its predictive standard deviation into central intervals.  No third-party imports."""

from __future__ import annotations

import numbers

import numpy as np


def check_forecaster_options(options, name="forecaster_options"):
    """``options`` must be a dict of :class:`~numrnn.forecast.Forecaster` keyword arguments
    other than ``horizon`` (which the caller sets); builds one Forecaster to validate them."""
    from numrnn.forecast.forecaster import Forecaster

    if not isinstance(options, dict):
        raise TypeError(f"{name} must be a dict of Forecaster arguments, got {type(options).__name__}")
    if "horizon" in options:
        raise ValueError(f"{name} must not contain 'horizon': it is set from the forecast horizon")
    Forecaster(horizon=1, **options)  # raises TypeError / ValueError naming the bad argument
    return dict(options)


def check_level_list(level, name="level"):
    """Levels as given (for the ``lo-{level}`` names), sorted; each a real number in (0, 100)."""
    if level is None:
        return []
    if isinstance(level, numbers.Real) and not isinstance(level, bool):
        level = [level]
    if isinstance(level, (str, bytes)) or not hasattr(level, "__iter__"):
        raise TypeError(f"{name} must be a list of numbers in (0, 100), got {level!r}")
    out = []
    for v in level:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must hold numbers in (0, 100), got {v!r} of type {type(v).__name__}")
        if not 0.0 < float(v) < 100.0:
            raise ValueError(f"{name} must lie strictly between 0 and 100, got {v!r}")
        out.append(v)
    return sorted(out)


def normal_quantile(prob):
    """The standard normal quantile of ``prob`` in (0, 1)."""
    from scipy.stats import norm

    return float(norm.ppf(prob))


def gaussian_bounds(mean, std, level):
    """``(lower, upper)`` of the central ``level``-percent normal interval around ``mean``.

    ``mean`` and ``std`` are arrays of one shape; ``z = Phi^-1(0.5 + level / 200)``,
    ``lower = mean - z * std``, ``upper = mean + z * std``.
    """
    z = normal_quantile(0.5 + float(level) / 200.0)
    return mean - z * std, mean + z * std


def needs_gaussian(loss, what):
    """Intervals come from the Gaussian head: refuse any other loss, saying what to change."""
    if loss != "gaussian":
        raise ValueError(f"{what} need loss='gaussian' (the model's predictive variance), got loss={loss!r}")
