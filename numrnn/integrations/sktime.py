"""numrnn in sktime: :class:`NumrnnForecaster`, an sktime ``BaseForecaster`` around
:class:`numrnn.forecast.Forecaster`.

Importing this module imports sktime (its base class is sktime's); ``numrnn`` and
``numrnn.integrations`` do not import it.  sktime's own conformance suite,
``sktime.utils.estimator_checks.check_estimator(NumrnnForecaster)``, passes on it.

>>> from sktime.datasets import load_airline                          # doctest: +SKIP
>>> from numrnn.integrations.sktime import NumrnnForecaster           # doctest: +SKIP
>>> f = NumrnnForecaster(lookback=24).fit(load_airline(), fh=range(1, 13))  # doctest: +SKIP
>>> f.predict_interval(coverage=0.9)                                 # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from sktime.forecasting.base import BaseForecaster

from numrnn.integrations._common import gaussian_bounds, needs_gaussian

__all__ = ["NumrnnForecaster"]


class NumrnnForecaster(BaseForecaster):
    """A univariate recurrent forecaster (:class:`numrnn.forecast.Forecaster`) for sktime.

    The network is trained, at :meth:`fit`, for the largest step of the forecasting horizon
    ``fh`` (which fit therefore needs); :meth:`predict` reads the last ``lookback`` values seen.
    Prediction intervals (``predict_interval``, ``predict_quantiles``, ``predict_var``) are
    normal, from the Gaussian head's predictive standard deviation: ``loss="gaussian"`` (the
    default) has them, other losses do not (the ``capability:pred_int`` tag says so).

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}, default "lstm"
    lookback : int, default 24
    hidden_size : int, default 32
    num_layers : int, default 1
    epochs : int, default 300
    lr : float, default 0.01
    batch_size : int, default 32
    loss : {"gaussian", "mse", "mae", "huber"}, default "gaussian"
    validation : int or None, default None
    patience : int, default 30
    ensemble : int, default 5
    transform : {"auto", "log", "none"}, default "auto"
    dtype : {"float32", "float64"}, default "float32"
    seed : int or None, default 0
        As for :class:`~numrnn.forecast.Forecaster`, which checks them (TypeError / ValueError
        naming the argument) at :meth:`fit`, as sktime's ``__init__`` only stores.

    Attributes
    ----------
    forecaster_ : numrnn.forecast.Forecaster
        The fitted model.
    history_ : pandas.Series
        The values seen (fit, then update); predictions read its last ``lookback`` values.

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from numrnn.integrations.sktime import NumrnnForecaster
    >>> y = load_airline()
    >>> f = NumrnnForecaster(lookback=12, hidden_size=4, epochs=3, ensemble=1)
    >>> f = f.fit(y, fh=[1, 2, 3])
    >>> y_pred = f.predict()
    >>> interval = f.predict_interval(coverage=0.9)
    """

    _tags = {
        "authors": ["numrnn developers"],
        "y_inner_mtype": "pd.Series",
        "scitype:y": "univariate",
        "capability:multivariate": False,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": True,
        "capability:pred_int:insample": False,
        "capability:missing_values": False,
        "capability:update": True,
        "requires-fh-in-fit": True,
        "python_dependencies": ["numrnn"],
    }
    # the history predict reads is kept here (history_), not in sktime's _y
    _config = {"remember_data": False}

    def __init__(self, cell="lstm", lookback=24, hidden_size=32, num_layers=1, epochs=300, lr=0.01,
                 batch_size=32, loss="gaussian", validation=None, patience=30, ensemble=5,
                 transform="auto", dtype="float32", seed=0):
        self.cell = cell
        self.lookback = lookback
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.loss = loss
        self.validation = validation
        self.patience = patience
        self.ensemble = ensemble
        self.transform = transform
        self.dtype = dtype
        self.seed = seed
        super().__init__()
        self._y = self._X = None  # what sktime keeps when remember_data is set to True later
        self.set_tags(**{"capability:pred_int": loss == "gaussian"})

    def _steps(self, fh):
        steps = np.asarray(fh.to_relative(self.cutoff), dtype=np.int64)
        if steps.min() < 1:
            raise ValueError(f"fh must be out of sample (steps >= 1 after the cutoff), got steps {steps.tolist()}")
        return steps

    def _fit(self, y, X=None, fh=None):
        from numrnn.forecast import Forecaster

        params = self.get_params(deep=False)
        horizon = int(self._steps(fh).max())
        self.forecaster_ = Forecaster(horizon=horizon, backend="cpu", **params)
        self.forecaster_.fit(y.to_numpy(dtype=np.float64), progress=False)
        self.history_ = y.copy()
        return self

    def _update(self, y, X=None, update_params=True):
        """Append the new values of ``y`` to the history; with ``update_params``, refit on it all."""
        import pandas as pd

        new = y[y.index > self.history_.index[-1]]
        self.history_ = pd.concat([self.history_, new]) if len(new) else self.history_
        if update_params:
            self.forecaster_.fit(self.history_.to_numpy(dtype=np.float64), progress=False)
        return self

    def _mean_std(self, fh, with_std):
        steps = self._steps(fh)
        horizon = self.forecaster_.horizon
        if steps.max() > horizon:
            raise ValueError(f"fh must stay within the horizon fitted ({horizon} steps), got steps {steps.tolist()}")
        y = self.history_.to_numpy(dtype=np.float64)
        if with_std:
            needs_gaussian(self.loss, "prediction intervals")
            mean, std = self.forecaster_.predict(y, return_std=True)
            return mean[steps - 1], std[steps - 1]
        return self.forecaster_.predict(y)[steps - 1], None

    def _predict(self, fh, X=None):
        import pandas as pd

        mean, _ = self._mean_std(fh, with_std=False)
        return pd.Series(mean, index=fh.to_absolute_index(self.cutoff), name=self.history_.name)

    def _predict_interval(self, fh, X, coverage):
        """Normal intervals ``mean -/+ z * std``, one (lower, upper) pair per coverage."""
        import pandas as pd

        mean, std = self._mean_std(fh, with_std=True)
        name = self.history_.name if self.history_.name is not None else 0
        columns = pd.MultiIndex.from_product([[name], list(coverage), ["lower", "upper"]])
        values = []
        for c in coverage:
            lower, upper = gaussian_bounds(mean, std, 100.0 * c)
            values += [lower, upper]
        return pd.DataFrame(np.column_stack(values), index=fh.to_absolute_index(self.cutoff), columns=columns)

    def _predict_var(self, fh, X=None, cov=False):
        """Predictive variances ``std ** 2`` (the marginals; ``cov=True`` is not available)."""
        import pandas as pd

        if cov:
            raise ValueError("cov=True is not available: the model gives marginal variances only")
        _, std = self._mean_std(fh, with_std=True)
        name = self.history_.name if self.history_.name is not None else 0
        return pd.DataFrame({name: std**2}, index=fh.to_absolute_index(self.cutoff))

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Two tiny configurations for sktime's conformance suite (seconds to fit).

        Returns
        -------
        list of dict
        """
        tiny = dict(lookback=3, hidden_size=4, epochs=3, batch_size=8, validation=0, ensemble=1)
        return [dict(tiny), dict(tiny, cell="gru", loss="mse", num_layers=2, seed=1)]
