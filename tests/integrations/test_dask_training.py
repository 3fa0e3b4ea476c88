"""Data-parallel GlobalForecaster training on a LocalCluster: equal on 1 and 2 workers bit for bit,
equal to the single-process fit to rounding, dask DataFrames in and out, local steps, a worker
killed mid-fit (the fit carries on, same result) and a lost worker named within a timeout."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from numrnn.forecast import GlobalForecaster  # noqa: E402
from numrnn.integrations.dask import numba_environ  # noqa: E402
from numrnn.integrations.dask_training import fit_on_dask  # noqa: E402

TINY = dict(hidden_size=4, epochs=2, steps_per_epoch=3, batch_size=16, ensemble=1, patience=5, season_length=4)
HORIZON = 3


def _frame(n_series=8, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        n = int(rng.integers(14, 40))
        t = np.arange(n)
        y = 20 + 0.1 * t + 3 * np.sin(2 * np.pi * (t + i) / 4) + 0.5 * rng.normal(size=n)
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2000-01-01", periods=n, freq="MS"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=3)  # rows in any order


def _params(gf):
    return [net.state_dict() for net in gf._fitted["members"]]


def _assert_bitwise(a, b):
    for da, db in zip(_params(a), _params(b), strict=True):
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)


def _assert_close(a, b, rtol):
    for da, db in zip(_params(a), _params(b), strict=True):
        for k in da:
            np.testing.assert_allclose(db[k], da[k], rtol=rtol, atol=rtol * np.abs(da[k]).max(), err_msg=k)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=numba_environ(), silence_logs=50) as lc:
        with distributed.Client(lc, timeout=60) as client:
            yield lc, client


def test_import_does_not_import_dask():
    code = ("import sys, numrnn, numrnn.forecast, numrnn.integrations.dask_training; "
            "bad = {'dask', 'distributed'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_one_and_two_workers_bitwise_and_equal_to_one_process(cluster, dtype, rtol, tmp_path):
    _, client = cluster
    df = _frame()
    local = GlobalForecaster(horizon=HORIZON, dtype=dtype, series_embedding=False, **TINY).fit(df, progress=False)
    two = GlobalForecaster(horizon=HORIZON, dtype=dtype, **TINY).fit(df, client=client, shards=3, progress=False)
    one_worker = sorted(client.scheduler_info()["workers"])[:1]
    gf = GlobalForecaster(horizon=HORIZON, dtype=dtype, **TINY)
    one = fit_on_dask(gf, df, client, shards=3, workers=one_worker)
    gf._fitted = one
    _assert_bitwise(two, gf)  # the number of workers does not matter, to the bit
    _assert_close(local, two, rtol)  # the single-process fit: the same sums in another order
    assert two.history_[0]["epochs_run"] == local.history_[0]["epochs_run"]
    np.testing.assert_allclose(two.history_[0]["val_loss"], local.history_[0]["val_loss"], rtol=1e3 * rtol)
    # building the shards, each epoch's steps and validation, and each member's calibration outputs
    assert two._fitted["round_trips"] == 1 + TINY["epochs"] * (TINY["steps_per_epoch"] + 1) + TINY["ensemble"]
    assert two.untrained_ids_ == local.untrained_ids_ and two.unvalidated_ids_ == local.unvalidated_ids_
    assert gf.calibration_ == two.calibration_  # calibrated on the shards' validation windows, as in process
    np.testing.assert_allclose(two.calibration_, local.calibration_, rtol=1e3 * rtol)
    two.save(tmp_path / "two.npz")  # a fit on a pandas frame keeps its series: saved and loaded as usual
    loaded = GlobalForecaster.load(tmp_path / "two.npz")
    np.testing.assert_array_equal(loaded.predict()["yhat"].to_numpy(), two.predict()["yhat"].to_numpy())


def test_dask_frame_in_and_out(cluster):
    _, client = cluster
    df = _frame()
    ddf = dd.from_pandas(df.sort_values(["unique_id", "ds"]).set_index("unique_id"), npartitions=2, sort=True)
    ddf = ddf.repartition(divisions=["s0", "s3", "s6", "s7"])  # 3, 3 and 2 series: the pandas fit's 3 shards
    assert ddf.map_partitions(lambda p: p.index.nunique()).compute().tolist() == [3, 3, 2]
    from_dask = GlobalForecaster(horizon=HORIZON, **TINY).fit(ddf, client=client, progress=False)
    from_pandas = GlobalForecaster(horizon=HORIZON, **TINY).fit(df, client=client, shards=3, progress=False)
    _assert_bitwise(from_pandas, from_dask)  # the same shards, read on the workers: the same fit
    expected = from_pandas.predict(df, level=[80])
    got = from_pandas.predict(ddf, level=[80], client=client)
    assert isinstance(got, dd.DataFrame)
    got = got.compute().reset_index(drop=True)
    assert list(got.columns) == ["unique_id", "ds", "yhat", "yhat-lo-80", "yhat-hi-80"]
    assert got["unique_id"].tolist() == expected["unique_id"].tolist()
    assert (got["ds"].to_numpy() == expected["ds"].to_numpy()).all()
    np.testing.assert_allclose(got["yhat"].to_numpy(), expected["yhat"].to_numpy(), rtol=1e-12)
    on_pandas = from_pandas.predict(df, level=[80], client=client)
    assert isinstance(on_pandas, pd.DataFrame)
    np.testing.assert_allclose(on_pandas["yhat-hi-80"].to_numpy(), expected["yhat-hi-80"].to_numpy(), rtol=1e-12)
    assert from_pandas.calibration_ is not None and from_pandas.calibration_ != 1.0  # the workers applied it
    local = GlobalForecaster(horizon=HORIZON, **TINY).fit(df, progress=False)
    on_workers = local.predict(df, level=[80], client=client)  # an in-process fit's intervals, on the workers
    np.testing.assert_array_equal(on_workers["yhat-lo-80"].to_numpy(), local.predict(df, level=[80])["yhat-lo-80"].to_numpy())
    # a dask DataFrame's fit keeps no series on the driver, but forecasts given a history, here and on the workers
    for fc in (from_dask.predict(df, level=[80]), from_dask.predict(ddf, level=[80], client=client).compute()):
        np.testing.assert_array_equal(fc["yhat"].to_numpy(), expected["yhat"].to_numpy())
    with pytest.raises(ValueError, match="keeps no training series"):
        from_dask.predict()
    with pytest.raises(ValueError, match="keeps none on the driver"):
        from_dask.save("never-written.npz")
    assert not os.path.exists("never-written.npz")


def test_exogenous_regressors_on_dask_equal_the_single_process_fit(cluster):
    _, client = cluster
    df = _frame().sort_values(["unique_id", "ds"]).reset_index(drop=True)
    df["promo"] = (np.random.default_rng(4).random(len(df)) < 0.3).astype(np.float64)
    local = GlobalForecaster(horizon=HORIZON, series_embedding=False, **TINY).fit(df, progress=False)
    two = GlobalForecaster(horizon=HORIZON, **TINY).fit(df, client=client, shards=3, progress=False)
    assert two.exog_names_ == local.exog_names_ == ["promo"]
    _assert_close(local, two, 1e-6)  # each shard standardised its series' regressors as one process does
    ddf = dd.from_pandas(df.set_index("unique_id"), npartitions=2, sort=True)
    ddf = ddf.repartition(divisions=["s0", "s3", "s6", "s7"])  # the pandas fit's 3 shards
    from_dask = GlobalForecaster(horizon=HORIZON, **TINY).fit(ddf, client=client, progress=False)
    _assert_bitwise(two, from_dask)
    none = GlobalForecaster(horizon=HORIZON, **TINY).fit(df, client=client, shards=3, progress=False, exog=[])
    assert none.exog_names_ == []
    future = df.groupby("unique_id").tail(HORIZON).assign(ds=lambda f: f["ds"] + pd.DateOffset(months=HORIZON))
    expected = local.predict(X_df=future, level=[80])
    np.testing.assert_allclose(two.predict(X_df=future)["yhat"].to_numpy(), expected["yhat"].to_numpy(), rtol=1e-4)
    # forecasts on the workers, with the regressors' future values: a pandas and a dask history
    on_pandas = local.predict(df, X_df=future, level=[80], client=client)
    pd.testing.assert_frame_equal(on_pandas, expected)
    on_dask = local.predict(ddf, X_df=future, level=[80], client=client).compute()
    on_dask = on_dask.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(on_dask, expected.sort_values(["unique_id", "ds"]).reset_index(drop=True))
    with pytest.raises(ValueError, match=r"fitted with the exogenous regressors \['promo'\]: pass their future values"):
        local.predict(df, client=client)
    with pytest.raises(ValueError, match="s0"):  # a series' future rows missing: named, on the driver
        local.predict(df, X_df=future[future["unique_id"] != "s0"], client=client)


def test_local_steps(cluster):
    _, client = cluster
    df = _frame()
    sync = GlobalForecaster(horizon=HORIZON, **TINY).fit(df, client=client, shards=3, progress=False)
    opts = dict(TINY, steps_per_epoch=4)
    two = GlobalForecaster(horizon=HORIZON, **opts).fit(df, client=client, shards=3, local_steps=2, progress=False)
    gf = GlobalForecaster(horizon=HORIZON, **opts)
    gf._fitted = fit_on_dask(gf, df, client, shards=3, local_steps=2,
                             workers=sorted(client.scheduler_info()["workers"])[1:])
    _assert_bitwise(two, gf)  # local steps are per shard, so still independent of the workers
    assert two._fitted["round_trips"] == 1 + opts["epochs"] * (opts["steps_per_epoch"] // 2 + 1) + opts["ensemble"]
    assert all(np.isfinite(v).all() for v in _params(two)[0].values())
    assert len(two.history_[0]["train_loss"]) == opts["epochs"] and sync.is_fitted


def test_worker_killed_mid_fit_carries_on(cluster):
    lc, client = cluster
    df = _frame(10, seed=1)
    opts = dict(TINY, steps_per_epoch=150)
    expected = GlobalForecaster(horizon=HORIZON, **opts).fit(df, client=client, shards=4, progress=False)
    gf = GlobalForecaster(horizon=HORIZON, **opts)
    errors = []

    def fit():
        try:
            gf.fit(df, client=client, shards=4, progress=False, timeout=90)
        except Exception as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=fit, daemon=True)
    worker.start()
    time.sleep(1.5)
    victim = next(iter(lc.workers.values()))
    assert worker.is_alive()  # the kill lands mid-fit
    os.kill(victim.process.process.pid, signal.SIGKILL)
    worker.join(timeout=200)
    assert not worker.is_alive() and not errors, errors
    _assert_bitwise(expected, gf)  # the lost shards were rebuilt and the steps rerun: the same fit
    client.wait_for_workers(2, timeout=120)


def test_lost_worker_named_within_timeout(cluster):
    lc, client = cluster
    client.wait_for_workers(2, timeout=120)
    df = _frame(6, seed=2)
    address = sorted(client.scheduler_info()["workers"])[0]
    victim = next(w for w in lc.workers.values() if w.worker_address == address)
    gf = GlobalForecaster(horizon=HORIZON, **dict(TINY, steps_per_epoch=2000))
    errors = []

    def fit():  # pinned to one worker: once it is gone (restarted elsewhere), its tasks cannot run
        try:
            fit_on_dask(gf, df, client, shards=2, timeout=4, workers=[address])
        except Exception as exc:
            errors.append(exc)

    worker = threading.Thread(target=fit, daemon=True)
    worker.start()
    time.sleep(1.5)
    assert worker.is_alive()
    os.kill(victim.process.process.pid, signal.SIGKILL)
    worker.join(timeout=60)
    assert not worker.is_alive()  # never hangs
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert address in str(errors[0]) and "workers lost since the fit began" in str(errors[0])
    client.wait_for_workers(2, timeout=120)


def test_bad_arguments(cluster):
    _, client = cluster
    df = _frame(4)
    gf = GlobalForecaster(horizon=HORIZON, **TINY)
    with pytest.raises(TypeError, match="client must be a distributed.Client, got str"):
        gf.fit(df, client="tcp://nowhere:1")
    with pytest.raises(ValueError, match="local_steps must be an int >= 1"):
        gf.fit(df, client=client, local_steps=0)
    with pytest.raises(ValueError, match="shards and local_steps apply to a fit on Dask workers"):
        gf.fit(df, local_steps=2)
    with pytest.raises(TypeError, match="data must be a pandas or dask DataFrame to fit with a client, got dict"):
        gf.fit({"a": np.arange(20.0)}, client=client)
    split = dd.from_pandas(df.sort_values("ds"), npartitions=2, sort=False)  # series across partitions
    with pytest.raises(ValueError, match="is in partitions 0 and 1 of data: each partition must hold whole series"):
        gf.fit(split, client=client)
    with pytest.raises(ValueError, match="shards applies to a pandas DataFrame"):
        gf.fit(split, client=client, shards=2)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['y'\]"):
        gf.fit(split.drop(columns="y"), client=client)
    assert not gf.is_fitted  # a fit that raises leaves the forecaster as it was


def test_a_task_error_is_raised_as_itself(cluster):
    _, client = cluster
    df = _frame(4).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    df.loc[5, "y"] = np.nan  # found by the worker reading the partition
    ddf = dd.from_pandas(df.set_index("unique_id"), npartitions=2, sort=True)
    with pytest.raises(ValueError, match=r"column 'y' of a partition of data has NaN or inf for unique_id \['s0'\]"):
        GlobalForecaster(horizon=HORIZON, **TINY).fit(ddf, client=client, progress=False)
