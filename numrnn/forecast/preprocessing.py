"""The forecasters' scalers: a fitted state, ``transform`` into model units and back.

* :class:`ColumnScaler` (:class:`numrnn.forecast.Forecaster`): per column of a (n, k) series,
  the log where the column is strictly positive (``transform="auto"``), then division by the
  standard deviation; covariates are standardised.  Its state is saved with the forecaster.
* :class:`SeriesScaler` (:class:`numrnn.forecast.GlobalForecaster`): per series of a panel, the
  log of a positive series, then division by its mean absolute one-step change.
* :class:`ExogScaler` (:class:`numrnn.forecast.GlobalForecaster`): per series and regressor,
  standardisation of the exogenous regressors on the part of the series the model may see.

Both compute in float64 and leave non-finite values (an overflow) for the caller to check.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn import _validation as check

__all__ = ["SERIES_TRANSFORMS", "TRANSFORMS", "ColumnScaler", "ExogScaler", "SeriesScaler", "safe_location_scale"]

#: The ``transform`` choices of :class:`ColumnScaler` and of :class:`SeriesScaler`.
TRANSFORMS = ("auto", "log", "none")
SERIES_TRANSFORMS = ("auto", "none")
_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")


def safe_location_scale(a):
    """Column means, standard deviations and largest magnitudes, without overflow or underflow.

    Parameters
    ----------
    a : ndarray, shape (n, k)
        Finite float64 values.

    Returns
    -------
    mean, std, maxabs : ndarray, shape (k,)
        ``np.mean(a, 0)``, ``np.std(a, 0)`` and ``np.max(np.abs(a), 0)``.  Each column is first
        divided by a power of two ``2**(e - 1)`` with ``max|a| = f * 2**e``, ``0.5 <= f < 1``
        (an exact division), so its values lie in ``[-2, 2)``; squares and sums then neither
        overflow (values near 1e308) nor underflow (values near 1e-300), and the results are
        multiplied back by the same factor.
    """
    k = a.shape[1]
    if a.shape[0] == 0 or k == 0:
        return np.zeros(k), np.zeros(k), np.zeros(k)
    maxabs = np.max(np.abs(a), axis=0)
    _, exponent = np.frexp(maxabs)  # frexp(0) = (0, 0): factor 0.5, harmless
    factor = np.ldexp(1.0, exponent - 1)  # exponent <= 1024, so factor <= 2**1023 is finite
    unit = a / factor
    return unit.mean(axis=0) * factor, unit.std(axis=0) * factor, maxabs


class ColumnScaler:
    """Per-column log transform and scale of a series, and standardisation of its covariates.

    Parameters
    ----------
    transform : {"auto", "log", "none"}, default "auto"
        "auto": log of every column that is strictly positive; "log": of every column.

    Attributes
    ----------
    log : ndarray of bool, shape (k,)
        Which columns are modelled on the log scale.
    scale : ndarray, shape (k,)
        Positive divisors of the (transformed) columns.
    exog_mean, exog_std : ndarray, shape (m,)
        Location and (positive) scale of the covariates.
    """

    def __init__(self, transform="auto"):
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {list(TRANSFORMS)}, got {transform!r}")
        self.transform = transform
        self.log = self.scale = self.exog_mean = self.exog_std = None

    def fit(self, y, exog, fit_end):
        """Fit on ``y[:fit_end]`` and ``exog[:fit_end]`` (the logs need all of ``y`` positive).

        Parameters
        ----------
        y : ndarray, shape (n, k)
            Finite float64 values.
        exog : ndarray, shape (n, m)
        fit_end : int
            The rows the statistics are computed on (those before the validation targets).

        Returns
        -------
        self
        """
        k = y.shape[1]
        if self.transform == "auto":
            log = np.all(y[:fit_end] > 0, axis=0) & np.all(y > 0, axis=0)
        elif self.transform == "log":
            if np.any(y <= 0):
                raise ValueError("transform='log' needs a strictly positive y; use transform='auto' or 'none'")
            log = np.ones(k, dtype=bool)
        else:
            log = np.zeros(k, dtype=bool)
        self.log = log
        z = self.log_transform(y)
        # overflow- and underflow-safe statistics (see safe_location_scale)
        _, z_std, z_max = safe_location_scale(z[:fit_end])
        # a constant column: log columns keep 1 (log units are relative already); the others are
        # divided by their magnitude, so that a constant near 1e-200 is not forecast near 0
        constant_scale = np.where(log | (z_max == 0), 1.0, z_max)
        self.scale = np.where(z_std > 0, z_std, constant_scale)
        exog_mean, exog_std, _ = safe_location_scale(exog[:fit_end])
        self.exog_mean, self.exog_std = exog_mean, np.where(exog_std > 0, exog_std, 1.0)
        return self

    def log_transform(self, y):
        """``y`` (n, k) with the log taken of the fitted log columns, which must be positive."""
        z = y.copy()
        if np.any(self.log):
            if np.any(y[:, self.log] <= 0):
                bad = [int(c) for c in np.flatnonzero(self.log) if np.any(y[:, c] <= 0)]
                raise ValueError(f"y must be strictly positive in column(s) {bad}: the model was fitted on their log")
            z[:, self.log] = np.log(y[:, self.log])
        return z

    def transform_values(self, y):
        """``y`` (n, k) in model units: log-transformed, divided by ``scale``."""
        with np.errstate(**_QUIET):
            return self.log_transform(y) / self.scale

    def transform_exog(self, exog):
        """Covariates (n, m) standardised."""
        with np.errstate(**_QUIET):
            return (exog - self.exog_mean) / self.exog_std

    def inverse_transform(self, scaled):
        """Values in model units (..., k) back in the original units; overflow gives inf."""
        with np.errstate(**_QUIET):
            z = scaled * self.scale
            out = z.copy()
            out[..., self.log] = np.exp(z[..., self.log])
        return out

    def inverse_std(self, scaled_std, forecast):
        """A standard deviation in model units (..., k) in the original units: times ``scale``,
        and for a log column the delta-method ``forecast * sigma_log``."""
        with np.errstate(**_QUIET):
            sd = scaled_std * self.scale
            std = sd.copy()
            std[..., self.log] = forecast[..., self.log] * sd[..., self.log]
        return std

    # ------------------------------------------------------------------ state

    def to_arrays(self, prefix="scaler/"):
        """The fitted state as named arrays (what :func:`numrnn.io.save_npz` writes)."""
        return {
            f"{prefix}log": self.log.astype(np.uint8),
            f"{prefix}scale": self.scale,
            f"{prefix}exog_mean": self.exog_mean,
            f"{prefix}exog_std": self.exog_std,
        }

    @classmethod
    def from_arrays(cls, arrays, n_targets, n_exog, transform, prefix="scaler/"):
        """A fitted scaler from :meth:`to_arrays`'s arrays, checked: shapes and dtypes as saved,
        finite values, positive scales, log flags 0/1 that fit ``transform``.

        Raises
        ------
        ValueError
            Naming the array that is missing or wrong.
        """
        k, m = n_targets, n_exog
        log = check.expect_array(arrays, f"{prefix}log", (k,), "uint8")
        state = {
            "scale": check.expect_array(arrays, f"{prefix}scale", (k,), "float64"),
            "exog_mean": check.expect_array(arrays, f"{prefix}exog_mean", (m,), "float64"),
            "exog_std": check.expect_array(arrays, f"{prefix}exog_std", (m,), "float64"),
        }
        if not np.isin(log, (0, 1)).all():
            raise ValueError(f"array '{prefix}log' must hold 0 and 1, got {log.tolist()}")
        log = log.astype(bool)
        for key, value in state.items():
            if not np.isfinite(value).all():
                raise ValueError(f"array '{prefix}{key}' is not finite: {value.tolist()}")
        for key in ("scale", "exog_std"):
            if not (state[key] > 0).all():
                raise ValueError(f"array '{prefix}{key}' must be positive, got {state[key].tolist()}")
        if (transform == "log" and not log.all()) or (transform == "none" and log.any()):
            raise ValueError(f"array '{prefix}log' {log.tolist()} does not fit transform={transform!r}")
        scaler = cls(transform)
        scaler.log = log
        scaler.scale, scaler.exog_mean, scaler.exog_std = state["scale"], state["exog_mean"], state["exog_std"]
        return scaler

    def array_names(self, prefix="scaler/"):
        """The names :meth:`to_arrays` writes."""
        return {f"{prefix}{key}" for key in ("log", "scale", "exog_mean", "exog_std")}


def _series_scale(z, log):
    """The scale of one (transformed) series: its mean absolute one-step change, else its standard
    deviation, else 0.01 (log) or 0.01 of its largest magnitude (1 for all zeros)."""
    s = float(np.mean(np.abs(np.diff(z)))) if z.size > 1 else 0.0
    if not (s > 0 and math.isfinite(s)):
        s = float(np.std(z)) if z.size > 1 else 0.0
    if not (s > 0 and math.isfinite(s)):
        big = float(np.max(np.abs(z)))
        s = 0.01 if log else (0.01 * big if big > 0 else 1.0)
    return s


class SeriesScaler:
    """Per-series log transform and scale of a panel of 1-D series.

    Parameters
    ----------
    transform : {"auto", "none"}, default "auto"
        "auto": model the log of every strictly positive series.

    Attributes
    ----------
    log : ndarray of bool, shape (S,)
        Which series are modelled on the log scale.
    scale : ndarray, shape (S,)
        Positive divisors of the (transformed) series.
    """

    def __init__(self, transform="auto"):
        if transform not in SERIES_TRANSFORMS:
            raise ValueError(f"transform must be one of {list(SERIES_TRANSFORMS)}, got {transform!r}")
        self.transform = transform
        self.log = self.scale = None

    def fit(self, values, fit_lengths=None):
        """Fit on the first ``fit_lengths[i]`` values of each series (all of them when None).

        Parameters
        ----------
        values : list of ndarray, shape (n_i,)
            Finite float64 series.
        fit_lengths : sequence of int, optional
            The part of each series the model may see (its training part).

        Returns
        -------
        self

        Notes
        -----
        A series is logged when its fitted part is positive and, in a fit, the whole series is
        too; its scale is that of its fitted part as transformed there.
        """
        logs, scales = [], []
        for i, y in enumerate(values):
            part = y if fit_lengths is None else y[: fit_lengths[i]]
            log = self.transform == "auto" and bool(np.all(part > 0))
            scales.append(_series_scale(np.log(part) if log else part, log))
            logs.append(log and bool(np.all(y > 0)))
        self.log, self.scale = np.array(logs, dtype=bool), np.array(scales)
        return self

    def transform_values(self, values):
        """The series in model units (list of ndarray, shape (n_i,))."""
        return [(np.log(y) if log else y) / s for y, log, s in zip(values, self.log, self.scale)]

    def inverse_transform(self, scaled):
        """Values in model units, shape (..., S, h), back in the original units."""
        z = scaled * self.scale[:, None]
        return np.where(self.log[:, None], np.exp(z), z)


class ExogScaler:
    r"""Per-series standardisation of exogenous regressors.

    For series :math:`i` and regressor :math:`r` with values :math:`x_{i,t,r}`,

    .. math::  \tilde x_{i,t,r} = (x_{i,t,r} - m_{i,r}) / d_{i,r},

    :math:`m_{i,r}` and :math:`d_{i,r}` the mean and standard deviation of the first
    ``fit_lengths[i]`` rows (the part the model may see); a regressor constant there has
    :math:`d_{i,r} = |m_{i,r}|` (changes relative to its level), or 1 when it is 0 there.
    A series with no fitted row has :math:`m = 0, d = 1`.

    Attributes
    ----------
    mean, std : ndarray, shape (S, m)
        :math:`m` and the positive :math:`d`.
    """

    def __init__(self):
        self.mean = self.std = None

    def fit(self, exog, fit_lengths=None):
        """Fit on the first ``fit_lengths[i]`` rows of each series' regressors (all when None).

        Parameters
        ----------
        exog : list of ndarray, shape (n_i, m)
            Finite float64 regressors.
        fit_lengths : sequence of int, optional

        Returns
        -------
        self
        """
        m = exog[0].shape[1] if exog else 0
        means, stds = np.zeros((len(exog), m)), np.ones((len(exog), m))
        for i, x in enumerate(exog):
            part = x if fit_lengths is None else x[: fit_lengths[i]]
            if part.shape[0] == 0:
                continue
            mean, std, _ = safe_location_scale(part)
            fallback = np.where(mean != 0, np.abs(mean), 1.0)
            means[i] = mean
            stds[i] = np.where((std > 0) & np.isfinite(std), std, fallback)
        self.mean, self.std = means, stds
        return self

    def transform(self, exog):
        """The regressors standardised (list of ndarray, shape (rows_i, m)); overflow gives inf."""
        with np.errstate(**_QUIET):
            return [(x - mu) / sd for x, mu, sd in zip(exog, self.mean, self.std)]
