"""Many local models on Dask: :func:`forecast_many`, and workers set up for Numba.

:func:`forecast_many` fits one :class:`numrnn.forecast.Forecaster` per series of a long
``unique_id, ds, y`` frame.  The frame is indexed by ``unique_id`` so that every partition holds
whole series (``set_index``; no groupby-apply shuffle), and ``map_partitions`` runs the fits on
the workers, which send back forecasts (a small DataFrame per partition), never pickled models.
Dask is imported inside the functions: ``import numrnn.integrations.dask`` does not import it.

What a cluster needs
--------------------
* The same environment on every node: the same numrnn, numba and numpy versions, installed at
  the same path (Numba's cache is keyed on the source file's path and modification time, so a
  different install path or a rebuilt image recompiles).
* ``NUMBA_NUM_THREADS=1`` in every worker process *before numba is imported there* (Numba reads it
  once, when its threading layer starts; Dask sets the BLAS variables, not Numba's, and two Numba
  threads per single-threaded worker measured 1.7x slower).  Put it in the worker's environment:
  ``LocalCluster(env=numba_environ(cache_dir))``, ``dask worker`` started from a shell that
  exports it, or :func:`prepare_workers`, which registers distributed's ``Environ`` nanny plugin
  (the nannies restart their workers with the variables set).
* glibc's sliding mmap threshold.  Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_``
  set (``distributed.nanny.pre-spawn-environ``), and setting any malloc tunable fixes glibc's
  mmap threshold at 128 KiB: every larger NumPy array is then mapped afresh and page-faulted,
  and a global-model step of 1,024 windows measured 1.5x slower (17.2 ms against 11.4 ms).
  :func:`tune_worker_malloc` raises the threshold back (``mallopt``; it runs in the warm-up of
  :func:`prepare_workers` and wherever numrnn trains on a worker); or export
  ``MALLOC_MMAP_THRESHOLD_`` in the shell that starts ``dask worker``.
* One Numba cache directory the workers share (``NUMBA_CACHE_DIR``: a shared file system, or the
  same path baked into the image), filled once: :func:`prepare_workers` warms one worker up
  first, then every worker (and every worker that joins later, through a worker plugin) loads
  the compiled kernels from the cache instead of compiling for minutes.
"""

from __future__ import annotations

import os

import numpy as np

from numrnn import _validation as check
from numrnn.integrations._common import check_forecaster_options
from numrnn.integrations._malloc import MMAP_THRESHOLD, tune_worker_malloc

__all__ = ["MMAP_THRESHOLD", "forecast_many", "numba_environ", "prepare_workers", "tune_worker_malloc"]

_COLUMNS = ("unique_id", "ds", "y")


def numba_environ(cache_dir=None):
    """The environment variables a numrnn Dask worker needs, for a worker or nanny spec.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Shared Numba cache directory (``NUMBA_CACHE_DIR``); None leaves Numba's default (the
        ``__pycache__`` folders next to numrnn's sources).

    Returns
    -------
    dict
        ``{"NUMBA_NUM_THREADS": "1"}`` and, with ``cache_dir``, ``"NUMBA_CACHE_DIR"``; pass it as
        ``LocalCluster(env=...)`` or ``Nanny(env=...)``.
    """
    env = {"NUMBA_NUM_THREADS": "1"}
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a str or os.PathLike, got {type(cache_dir).__name__}")
        env["NUMBA_CACHE_DIR"] = os.fspath(cache_dir)
    return env


def prepare_workers(client, cache_dir=None, cells=("lstm",), dtypes=("float32",)):
    """Set a cluster's workers up for numrnn: one Numba thread, a shared cache, kernels warm.

    1. With ``cache_dir`` or workers started without ``NUMBA_NUM_THREADS=1``, registers
       distributed's ``Environ`` nanny plugin with :func:`numba_environ`, which restarts the
       workers with the variables set before anything imports numba (workers need nannies
       for this: ``dask worker --nanny``, the default, or ``LocalCluster(processes=True)``);
    2. warms up one worker, which fills the cache (the warm-up also runs
       :func:`tune_worker_malloc`);
    3. registers a worker plugin (``numrnn-warmup``) that runs :func:`numrnn.warmup`, so every worker, and every worker that joins or is
       restarted later, warms up from the filled cache.

    Parameters
    ----------
    client : distributed.Client
    cache_dir : str or os.PathLike, optional
        Shared Numba cache directory; None keeps each worker's current one.
    cells, dtypes
        As for :func:`numrnn.warmup`.

    Returns
    -------
    dict
        Per worker address: ``numba_num_threads``, ``cache_dir``, ``warmup_s`` (the plugin's
        warm-up seconds), ``mmap_threshold`` (what :func:`tune_worker_malloc` set, or None),
        ``pid``.

    Raises
    ------
    RuntimeError
        If a worker still runs more than one Numba thread afterwards (it had no nanny to restart
        it with the environment), naming the worker.
    """
    from distributed import Client
    from distributed.diagnostics.plugin import Environ

    from numrnn.integrations._dask_plugin import NumrnnWorkerPlugin, warm_up, worker_state

    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    env = numba_environ(cache_dir)
    current = client.run(lambda: {k: os.environ.get(k) for k in env})
    if any(state != env for state in current.values()):
        client.register_plugin(Environ(env))
    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise RuntimeError("prepare_workers() found no workers on the cluster")
    client.run(warm_up, cells, dtypes, workers=workers[:1])  # fill the cache once
    client.register_plugin(NumrnnWorkerPlugin(cells, dtypes), name=NumrnnWorkerPlugin.name)
    states = client.run(worker_state)
    for address, state in states.items():
        if state.get("numba_num_threads") != 1:
            raise RuntimeError(
                f"worker {address} runs {state.get('numba_num_threads')} Numba threads: start it with "
                "NUMBA_NUM_THREADS=1 in its environment (it has no nanny to restart it with the variable)")
    return states


# ---------------------------------------------------------------------- forecast_many


def _future_dates(pd, ds, horizon, freq):
    """The ``horizon`` dates after the sorted dates ``ds`` of one series."""
    if pd.api.types.is_datetime64_any_dtype(ds):
        step = freq if freq is not None else pd.infer_freq(pd.DatetimeIndex(ds))
        if step is None:
            raise ValueError(f"ds of a series must be evenly spaced to infer its frequency; pass freq (got {list(ds[:3])} ...)")
        return pd.date_range(start=ds.iloc[-1], periods=horizon + 1, freq=step)[1:].to_numpy()
    values = ds.to_numpy().astype(np.int64)
    steps = np.unique(np.diff(values))
    if freq is None and len(steps) != 1:
        raise ValueError(f"integer ds must be evenly spaced to infer its step; pass freq (steps {steps[:5].tolist()})")
    step = int(freq) if freq is not None else int(steps[0])
    return values[-1] + step * np.arange(1, horizon + 1, dtype=np.int64)


def _forecast_partition(part, horizon, options, freq):
    """Fit one Forecaster per series of ``part`` (indexed by unique_id) and return the forecasts."""
    import pandas as pd

    from numrnn.forecast.forecaster import Forecaster

    tune_worker_malloc()
    index_dtype = part.index.dtype
    keys, dates, values = [], [], []
    part = part.reset_index()
    for key, group in part.groupby("unique_id", sort=True, observed=True):
        group = group.sort_values("ds", kind="stable")
        y = group["y"].to_numpy(dtype=np.float64)
        model = Forecaster(horizon=horizon, **options).fit(y, progress=False)
        keys.append(np.repeat(np.array([key], dtype=object), horizon))
        dates.append(_future_dates(pd, group["ds"], horizon, freq))
        values.append(np.asarray(model.predict(y), dtype=np.float64))
    if not keys:
        return _empty_result(pd, index_dtype, part["ds"].dtype)
    return pd.DataFrame({"unique_id": pd.Series(np.concatenate(keys), dtype=index_dtype),
                         "ds": np.concatenate(dates), "yhat": np.concatenate(values)})


def _empty_result(pd, id_dtype, ds_dtype):
    return pd.DataFrame({"unique_id": pd.Series([], dtype=id_dtype), "ds": pd.Series([], dtype=ds_dtype),
                         "yhat": pd.Series([], dtype=np.float64)})


def _by_series(data, npartitions):
    """``data`` as a dask DataFrame indexed by unique_id, whole series per partition."""
    import dask.dataframe as dd
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        missing = [c for c in _COLUMNS if c not in data.columns]
        if missing:
            raise ValueError(f"data must have columns {list(_COLUMNS)}, missing {missing}")
        frame = data[list(_COLUMNS)].sort_values(["unique_id", "ds"], kind="stable").set_index("unique_id")
        n_series = frame.index.nunique()
        return dd.from_pandas(frame, npartitions=max(1, min(npartitions, n_series)), sort=True)
    if isinstance(data, dd.DataFrame):
        if data.index.name == "unique_id" and data.known_divisions:
            missing = [c for c in _COLUMNS[1:] if c not in data.columns]
            if missing:
                raise ValueError(f"data must have columns ['ds', 'y'] besides its unique_id index, missing {missing}")
            return data[list(_COLUMNS[1:])]
        missing = [c for c in _COLUMNS if c not in data.columns]
        if missing:
            raise ValueError(f"data must have columns {list(_COLUMNS)} (or a unique_id index with known divisions), missing {missing}")
        return data[list(_COLUMNS)].set_index("unique_id", npartitions=npartitions)
    raise TypeError(f"data must be a pandas or dask DataFrame, got {type(data).__name__}")


def forecast_many(data, horizon, client=None, *, freq=None, npartitions=None, compute=True, **forecaster_options):
    """Fit one :class:`~numrnn.forecast.Forecaster` per series and forecast ``horizon`` steps.

    Parameters
    ----------
    data : pandas.DataFrame or dask.dataframe.DataFrame
        Long format with columns ``unique_id``, ``ds`` (datetimes or evenly spaced integers) and
        ``y``, as :class:`~numrnn.forecast.GlobalForecaster` takes; rows in any order.  A dask
        frame indexed by ``unique_id`` with known divisions is used as partitioned; otherwise it
        is indexed by ``unique_id`` (``set_index``, so partitions hold whole series).
    horizon : int
        Steps to forecast.
    client : distributed.Client, optional
        Where to run; None runs in this process (Dask's synchronous scheduler), which gives the
        same numbers.  Set the workers up first (:func:`prepare_workers`).
    freq : str or int, optional
        Pandas frequency of datetime ``ds`` (or the step of integer ``ds``); None infers it per
        series.
    npartitions : int, optional
        Partitions (tasks) for pandas input; default ``min(n_series, 4 x the client's threads)``
        (one without a client).  More, smaller tasks balance better and lose less to a lost
        worker; each costs a few milliseconds of scheduling.
    compute : bool, default True
        Return a pandas DataFrame; False returns the lazy dask DataFrame.
    **forecaster_options
        :class:`~numrnn.forecast.Forecaster` arguments (not ``horizon``); the same for every
        series, so with an integer ``seed`` each series' forecast equals a Forecaster fitted on
        it alone, bit for bit.

    Returns
    -------
    pandas.DataFrame
        Columns ``unique_id``, ``ds`` (the future dates) and ``yhat``; ``horizon`` rows per
        series, sorted by ``unique_id`` then ``ds``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments or data (naming the argument or column); a series too short for the
        Forecaster raises its ValueError from the worker.
    """
    horizon = check.check_int(horizon, "horizon", 1)
    options = check_forecaster_options(forecaster_options)
    compute = check.check_bool(compute, "compute")
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    if npartitions is None:
        threads = 1 if client is None else max(1, sum(client.nthreads().values()))
        npartitions = 4 * threads if client is not None else 1
    npartitions = check.check_int(npartitions, "npartitions", 1)
    import pandas as pd

    frame = _by_series(data, npartitions)
    meta = _empty_result(pd, frame.index.dtype, frame["ds"].dtype)
    out = frame.map_partitions(_forecast_partition, horizon, options, freq, meta=meta,
                               align_dataframes=False, enforce_metadata=False)
    if not compute:
        return out
    result = out.compute(scheduler="synchronous") if client is None else client.compute(out).result()
    return result.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
