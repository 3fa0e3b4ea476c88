"""numrnn in statsforecast: :class:`NumrnnModel` follows statsforecast's model protocol.

statsforecast (``StatsForecast(models=[...], freq=...)``) calls its models on one series at a
time, as 1-D NumPy arrays, through ``new()``, ``fit(y, X)``, ``predict(h, X, level)`` and
``forecast(y, h, X, X_future, level, fitted)``, and reads dicts with ``"mean"``, ``"lo-80"``,
``"hi-80"``, ... back.  :class:`NumrnnModel` implements that protocol around
:class:`numrnn.forecast.Forecaster` (one local model per series), so ``forecast``,
``cross_validation``, and statsforecast's fugue backends (Dask, Spark, Ray) run numrnn models.
This module never imports statsforecast.

>>> from statsforecast import StatsForecast                        # doctest: +SKIP
>>> from numrnn.integrations.statsforecast import NumrnnModel       # doctest: +SKIP
>>> sf = StatsForecast(models=[NumrnnModel(lookback=24, epochs=100)], freq="MS")  # doctest: +SKIP
>>> sf.forecast(df=df, h=12, level=[80])                           # doctest: +SKIP

Notes
-----
statsforecast's fugue path (``forecast(df=spark_or_dask_frame, ...)``) declares every forecast
column as float32 in its output schema, so forecasts computed in float64 come back rounded to
float32 there; the pandas path keeps float64.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn.integrations._common import check_forecaster_options, check_level_list, gaussian_bounds, needs_gaussian

__all__ = ["NumrnnModel"]


class NumrnnModel:
    """A statsforecast model wrapping :class:`numrnn.forecast.Forecaster`.

    Parameters
    ----------
    horizon : int or None, default None
        Horizon the network is trained for.  None: the horizon of the call (``h`` of
        :meth:`forecast`, or of the first :meth:`predict` after :meth:`fit`, which then trains).
        An int: :meth:`fit` trains at once, and ``predict(h)`` needs ``h <= horizon`` (the first
        ``h`` steps are returned).
    alias : str, default "NumrnnModel"
        The name of the model's columns in statsforecast's output.
    loss : str, default "gaussian"
        The Forecaster's loss; ``"gaussian"`` (a predictive variance per step) is what the
        ``level=`` intervals are computed from, so other losses refuse ``level``.
    **forecaster_options
        Any other :class:`~numrnn.forecast.Forecaster` argument (``cell``, ``lookback``,
        ``hidden_size``, ``epochs``, ``ensemble``, ``seed``, ...).

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it (the Forecaster's own checks run here).

    Notes
    -----
    Intervals are normal: ``lo-L = mean - z * std``, ``hi-L = mean + z * std`` with
    ``z = Phi^-1(0.5 + L / 200)`` and ``std`` the Forecaster's predictive standard deviation
    (``predict(..., return_std=True)``).  ``fitted=True`` gives one-step-ahead in-sample
    forecasts, NaN for the first ``lookback`` values.  statsforecast's fugue path declares its
    outputs float32.
    """

    uses_exog = True  # statsforecast passes exogenous columns of the frame as X / X_future

    def __init__(self, horizon=None, alias="NumrnnModel", loss="gaussian", **forecaster_options):
        self.horizon = check.check_int(horizon, "horizon", 1, allow_none=True)
        if not isinstance(alias, str) or not alias:
            raise TypeError(f"alias must be a non-empty str, got {alias!r}")
        self.alias = alias
        self.forecaster_options = check_forecaster_options({**forecaster_options, "loss": loss})
        self.loss = self.forecaster_options["loss"]

    def __repr__(self):
        return self.alias

    def new(self):
        """An unfitted copy with the same arguments (statsforecast calls it once per series)."""
        return type(self)(horizon=self.horizon, alias=self.alias, **self.forecaster_options)

    # ------------------------------------------------------------------ helpers

    def _forecaster(self, horizon):
        from numrnn.forecast import Forecaster

        return Forecaster(horizon=horizon, **self.forecaster_options)

    def _horizon_for(self, h):
        h = check.check_int(h, "h", 1)
        if self.horizon is not None and h > self.horizon:
            raise ValueError(f"h must be <= horizon = {self.horizon} (the trained horizon), got {h}")
        return h, (self.horizon if self.horizon is not None else h)

    @staticmethod
    def _series(y):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one series, as statsforecast passes it), got shape {y.shape}")
        return y

    @staticmethod
    def _exog(X, rows, name):
        if X is None:
            return None
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0] != rows or X.shape[1] == 0:
            raise ValueError(f"{name} must have shape ({rows}, n_x) with n_x >= 1, got {X.shape}")
        return X

    def _outputs(self, model, y, X, X_future, h, levels):
        """The ``mean`` and ``lo-L`` / ``hi-L`` entries of ``model``'s forecast after ``y``."""
        horizon = model.horizon
        if X is not None and (X_future is None or X_future.shape[0] != horizon):
            raise ValueError(f"X_future must have horizon = {horizon} rows with X given, got "
                             f"{None if X_future is None else X_future.shape[0]}")
        kwargs = {} if X is None else {"exog": X, "exog_future": X_future}
        if levels:
            needs_gaussian(self.loss, "prediction intervals (level)")
            mean, std = model.predict(y, return_std=True, **kwargs)
        else:
            mean, std = model.predict(y, **kwargs), None
        res = {"mean": mean[:h]}
        for lv in levels:
            lo, hi = gaussian_bounds(mean[:h], std[:h], lv)
            res[f"lo-{lv}"], res[f"hi-{lv}"] = lo, hi
        return res

    def _fitted_values(self, model, y, levels):
        """One-step-ahead in-sample forecasts (NaN for the first ``lookback``), with intervals."""
        n, lookback = len(y), model.lookback
        mean = np.full(n, np.nan)
        std = np.full(n, np.nan)
        for t in range(lookback, n):
            if levels:
                m, s = model.predict(y[:t], return_std=True)
                mean[t], std[t] = m[0], s[0]
            else:
                mean[t] = model.predict(y[:t])[0]
        res = {"fitted": mean}
        for lv in levels:
            lo, hi = gaussian_bounds(mean, std, lv)
            res[f"fitted-lo-{lv}"], res[f"fitted-hi-{lv}"] = lo, hi
        return res

    # ------------------------------------------------------------------ the protocol

    def fit(self, y, X=None):
        """Fit on one series ``y`` of shape (n,), with optional covariates ``X`` of shape (n, n_x).

        With ``horizon=None`` the series is kept and the network trains at the first
        :meth:`predict` (when the horizon is known).  Returns self.
        """
        y = self._series(y)
        X = self._exog(X, len(y), "X")
        self.y_, self.X_, self.model_ = y, X, None
        if self.horizon is not None:
            self.model_ = self._forecaster(self.horizon).fit(y, exog=X, progress=False)
        return self

    def predict(self, h, X=None, level=None):
        """Forecast ``h`` steps after the series of :meth:`fit`.

        Parameters
        ----------
        h : int
            Steps; ``<= horizon`` when ``horizon`` is set.
        X : array_like, shape (horizon, n_x), optional
            Future covariates; required when fitted with ``X``.
        level : list of numbers in (0, 100), optional
            Central interval levels in percent (needs ``loss="gaussian"``).

        Returns
        -------
        dict
            ``"mean"`` (h,) and, per level L, ``"lo-L"`` and ``"hi-L"`` (h,).
        """
        if not hasattr(self, "y_"):
            raise RuntimeError("predict() needs a fitted NumrnnModel: call fit() first")
        h, horizon = self._horizon_for(h)
        levels = check_level_list(level)
        if self.model_ is None or self.model_.horizon < h:
            self.model_ = self._forecaster(horizon).fit(self.y_, exog=self.X_, progress=False)
        X_future = self._exog(X, self.model_.horizon, "X")
        return self._outputs(self.model_, self.y_, self.X_, X_future, h, levels)

    def forecast(self, y, h, X=None, X_future=None, level=None, fitted=False):
        """Fit on ``y`` and forecast ``h`` steps, storing nothing (statsforecast's fast path).

        Parameters
        ----------
        y : array_like, shape (n,)
            The series.
        h : int
            Steps to forecast.
        X : array_like, shape (n, n_x), optional
            In-sample covariates.
        X_future : array_like, shape (horizon, n_x), optional
            Future covariates; required with ``X``.
        level : list of numbers in (0, 100), optional
            Central interval levels in percent.
        fitted : bool, default False
            Also return the in-sample one-step-ahead forecasts ``"fitted"`` (and
            ``"fitted-lo-L"`` / ``"fitted-hi-L"``); not available with ``X``.

        Returns
        -------
        dict
            ``"mean"``, ``"lo-L"``, ``"hi-L"`` (h,) and, with ``fitted``, the in-sample entries (n,).
        """
        y = self._series(y)
        h, horizon = self._horizon_for(h)
        levels = check_level_list(level)
        fitted = check.check_bool(fitted, "fitted")
        X = self._exog(X, len(y), "X")
        if fitted and X is not None:
            raise ValueError("fitted=True is not available with X: in-sample forecasts would need "
                             "future covariates past the end of the series")
        model = self._forecaster(horizon).fit(y, exog=X, progress=False)
        res = self._outputs(model, y, X, self._exog(X_future, horizon, "X_future"), h, levels)
        if fitted:
            res.update(self._fitted_values(model, y, levels))
        return res

    def forward(self, y, h, X=None, X_future=None, level=None, fitted=False):
        """Forecast ``h`` steps after a new history ``y`` with the fitted network (no refit)."""
        if getattr(self, "model_", None) is None:
            raise RuntimeError("forward() needs a NumrnnModel fitted with a horizon: call fit() (and predict) first")
        y = self._series(y)
        h, _ = self._horizon_for(h)
        if h > self.model_.horizon:
            raise ValueError(f"h must be <= the trained horizon {self.model_.horizon}, got {h}")
        levels = check_level_list(level)
        X = self._exog(X, len(y), "X")
        res = self._outputs(self.model_, y, X, self._exog(X_future, self.model_.horizon, "X_future"), h, levels)
        if check.check_bool(fitted, "fitted"):
            res.update(self._fitted_values(self.model_, y, levels))
        return res
