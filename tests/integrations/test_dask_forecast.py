"""forecast_many on a LocalCluster: equal to one Forecaster per series, and surviving a lost worker."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from numrnn.forecast import Forecaster  # noqa: E402
from numrnn.integrations.dask import MMAP_THRESHOLD, forecast_many, numba_environ, prepare_workers  # noqa: E402

OPTIONS = dict(lookback=6, hidden_size=4, epochs=4, ensemble=1, validation=0, batch_size=16, seed=5)
HORIZON = 3


def _frame(n_series, n=30, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.arange(n)
        y = 20 + i + 2 * np.sin(2 * np.pi * t / 12) + 0.2 * rng.normal(size=n)
        frames.append(pd.DataFrame({"unique_id": f"id{i:03d}", "ds": pd.date_range("2001-01-01", periods=n, freq="MS"), "y": y}))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # any row order


def _one_process(df):
    rows = []
    for uid, group in df.sort_values("ds").groupby("unique_id"):
        y = group["y"].to_numpy()
        fc = Forecaster(horizon=HORIZON, **OPTIONS).fit(y, progress=False).predict(y)
        dates = pd.date_range(group["ds"].iloc[-1], periods=HORIZON + 1, freq="MS")[1:]
        rows.append(pd.DataFrame({"unique_id": uid, "ds": dates, "yhat": fc}))
    return pd.concat(rows, ignore_index=True)


def _assert_same(got, expected):
    assert list(got.columns) == ["unique_id", "ds", "yhat"]
    assert got["unique_id"].astype(str).tolist() == expected["unique_id"].tolist()
    assert (got["ds"].to_numpy() == expected["ds"].to_numpy()).all()
    np.testing.assert_array_equal(got["yhat"].to_numpy(), expected["yhat"].to_numpy())


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=numba_environ(), silence_logs=40) as lc:
        with distributed.Client(lc, timeout=60) as client:
            yield lc, client


def test_import_does_not_import_dask():
    code = ("import sys, numrnn, numrnn.integrations, numrnn.integrations.dask, numrnn.integrations.statsforecast; "
            "bad = {'dask', 'distributed', 'sktime', 'statsforecast'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("env, expected", [({"MALLOC_TRIM_THRESHOLD_": "65536"}, MMAP_THRESHOLD),
                                          ({}, None),  # glibc's sliding threshold left alone
                                          ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "1048576"}, None)])
def test_tune_worker_malloc(env, expected):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = "from numrnn.integrations.dask import tune_worker_malloc; print(tune_worker_malloc())"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == str(expected)


def test_local_equals_one_forecaster_per_series():
    df = _frame(4)
    expected = _one_process(df)
    _assert_same(forecast_many(df, HORIZON, **OPTIONS), expected)
    _assert_same(forecast_many(df, HORIZON, npartitions=3, **OPTIONS), expected)


def test_integer_ds_and_bad_input():
    df = _frame(2)
    df["ds"] = df.groupby("unique_id")["ds"].rank(method="first").astype(np.int64) * 2
    fc = forecast_many(df, 2, **OPTIONS)
    last = df.groupby("unique_id")["ds"].max()
    assert fc.groupby("unique_id")["ds"].first().tolist() == (last + 2).tolist()
    with pytest.raises(ValueError, match="missing \\['y'\\]"):
        forecast_many(df.drop(columns="y"), 2)
    with pytest.raises(TypeError, match="data must be a pandas or dask DataFrame"):
        forecast_many(df.to_dict(), 2)
    with pytest.raises(ValueError, match="npartitions must be an int >= 1"):
        forecast_many(df, 2, npartitions=0)
    with pytest.raises(ValueError, match="hidden_size"):
        forecast_many(df, 2, hidden_size=0)
    with pytest.raises(TypeError, match="horizon must be an int"):
        forecast_many(df, 2.5)


def test_cluster_equals_one_process_and_workers_prepared(cluster):
    _, client = cluster
    states = prepare_workers(client)
    assert len(states) == 2 and all(s["numba_num_threads"] == 1 for s in states.values())
    if sys.platform.startswith("linux"):  # the nanny's MALLOC_TRIM_THRESHOLD_ fixed the mmap threshold
        assert all(s["mmap_threshold"] == MMAP_THRESHOLD for s in states.values()), states
    df = _frame(6)
    expected = _one_process(df)
    _assert_same(forecast_many(df, HORIZON, client=client, **OPTIONS), expected)
    import dask.dataframe as dd

    ddf = dd.from_pandas(df, npartitions=3)  # partitions split series: forecast_many re-indexes
    _assert_same(forecast_many(ddf, HORIZON, client=client, **OPTIONS), expected)


def test_worker_killed_mid_run(cluster):
    lc, client = cluster
    df = _frame(24, seed=2)
    options = dict(OPTIONS, epochs=60)  # enough, long enough tasks that the kill lands mid-run
    expected = forecast_many(df, HORIZON, **options)
    out = forecast_many(df, HORIZON, client=client, npartitions=24, compute=False, **options)
    future = client.compute(out)
    deadline = time.monotonic() + 120
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = next(iter(lc.workers.values()))
    pid = victim.process.process.pid
    assert future.status == "pending"  # the kill lands mid-run
    os.kill(pid, signal.SIGKILL)
    got = future.result(timeout=240)
    assert not future.cancelled()
    got = got.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    _assert_same(got, expected)
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the killed worker
    assert pid not in client.run(os.getpid).values()
