"""Forecasting: :class:`Forecaster` (one recurrent model per series or panel of columns) and
:class:`GlobalForecaster` (one model across many series, with prediction intervals).

>>> from numrnn.datasets import load_airline
>>> from numrnn.forecast import Forecaster
>>> y = load_airline()
>>> f = Forecaster(horizon=12, seed=0).fit(y[:-12], progress=False)   # doctest: +SKIP
>>> f.predict(y[:-12]).shape                                            # doctest: +SKIP
(12,)

The package's modules: :mod:`~numrnn.forecast.forecaster` (:class:`Forecaster`),
:mod:`~numrnn.forecast.global_model` (:class:`GlobalForecaster`),
:mod:`~numrnn.forecast.preprocessing` (the scalers), :mod:`~numrnn.forecast.network` (the
encoder + head network both use), :mod:`~numrnn.forecast.training` (the Forecaster's
ensemble training and divergence checks), :mod:`~numrnn.forecast.global_training`,
:mod:`~numrnn.forecast.windows` and :mod:`~numrnn.forecast.panel` (the GlobalForecaster's training and data), :mod:`~numrnn.forecast.persistence`
(save and load through :mod:`numrnn.io`, no pickle), :mod:`~numrnn.forecast.backtest`
(rolling-origin evaluation) and :mod:`~numrnn.forecast.pandas_io` (pandas in and out).
:func:`forecast_many` (one Forecaster per series, in parallel on Dask) is
:func:`numrnn.integrations.dask.forecast_many`.
pandas is imported only when pandas data is passed or returned.
"""

from numrnn.forecast.backtest import backtest
from numrnn.forecast.forecaster import Forecaster
from numrnn.forecast.global_model import GlobalForecaster
from numrnn.forecast.training import NonFiniteForecastError

__all__ = ["Forecaster", "GlobalForecaster", "NonFiniteForecastError", "backtest", "forecast_many"]


def __getattr__(name):
    # forecast_many (one Forecaster per series, on Dask or in this process) lives with the other
    # Dask code in numrnn.integrations.dask; loaded on first use, so importing numrnn.forecast
    # never imports that module (which itself imports dask only when called)
    if name == "forecast_many":
        from numrnn.integrations.dask import forecast_many

        return forecast_many
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
