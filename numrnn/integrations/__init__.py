"""Adapters to the forecasting ecosystem and to Dask.

* :mod:`numrnn.integrations.statsforecast`: :class:`~numrnn.integrations.statsforecast.NumrnnModel`,
  a model for ``StatsForecast(models=[...])`` (and so its fugue backends: Dask, Spark, Ray);
* :mod:`numrnn.integrations.sktime`: :class:`~numrnn.integrations.sktime.NumrnnForecaster`, an
  sktime ``BaseForecaster``;
* :mod:`numrnn.integrations.dask`: :func:`~numrnn.integrations.dask.forecast_many` (one local
  model per series, on a Dask cluster) and :func:`~numrnn.integrations.dask.prepare_workers`.

Importing this package imports none of statsforecast, sktime or dask: each submodule imports its
peer itself (sktime's at import, as its base class needs; dask's inside the functions).
"""

__all__ = ["dask", "sktime", "statsforecast"]
