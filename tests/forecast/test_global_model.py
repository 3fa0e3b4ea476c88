"""GlobalForecaster: array and DataFrame paths, bad input, determinism, save/load, cross-validation,
intervals, and a quality bar on a synthetic panel (beats seasonal naive; coverage near nominal)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from numrnn import metrics
from numrnn.forecast import GlobalForecaster

TINY = dict(hidden_size=6, epochs=3, steps_per_epoch=4, batch_size=16, ensemble=2, patience=2)


def panel(n_series=6, seed=0, low=20, high=60, season=12):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        n = int(rng.integers(low, high))
        t = np.arange(n)
        out[f"s{i}"] = 20 + 0.1 * t + 3 * np.sin(2 * np.pi * (t + i) / season) + 0.5 * rng.normal(size=n)
    return out


def as_frame(data, freq="MS", start="2000-01-01", ints=False):
    pd = pytest.importorskip("pandas")
    parts = []
    for i, (k, y) in enumerate(data.items()):
        if ints:
            ds = 3 * (np.arange(len(y)) + i)  # integer dates, step 3
        else:
            ds = pd.date_range(pd.Timestamp(start) + pd.DateOffset(months=i), periods=len(y), freq=freq)
        parts.append(pd.DataFrame({"unique_id": k, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted():
    data = panel()
    data["short"] = np.array([5.0, 6.0, 7.0, 6.5, 6.0, 7.5, 8.0, 8.5])  # > horizon, < 2 * horizon + 1
    data["tiny"] = np.array([3.0, 4.0])  # <= horizon: forecast but not trained on
    gf = GlobalForecaster(horizon=4, season_length=4, seed=0, **TINY).fit(data, progress=False)
    return gf, data


# ---------------------------------------------------------------------------------- array path


def test_array_path_shapes_and_attributes(fitted):
    gf, data = fitted
    out = gf.predict(level=[80])
    assert list(out) == list(data)
    for v in out.values():
        assert set(v) == {"yhat", "lo-80", "hi-80"}
        assert all(a.shape == (4,) and np.isfinite(a).all() for a in v.values())
    assert gf.untrained_ids_ == ["tiny"] and gf.unvalidated_ids_ == ["short"]
    assert gf.season_length_ == 4 and gf.lookback_ == 16 and gf.calendar_ is False and gf.seed_ == 0
    assert len(gf.history_) == 2 and all(h["epochs_run"] >= 1 for h in gf.history_)
    # a list in, a list out; no levels: only yhat
    listed = gf.predict(list(data.values()))
    assert isinstance(listed, list) and len(listed) == len(data) and set(listed[0]) == {"yhat"}
    # list keys (0, 1, ...) were not training keys: those series take the per-series table's mean row,
    # as any unseen key does; the training keys take their own rows
    renamed = gf.predict({f"new{i}": y for i, y in enumerate(data.values())})
    np.testing.assert_array_equal(listed[0]["yhat"], renamed["new0"]["yhat"])
    np.testing.assert_array_equal(gf.predict(dict(data))["s0"]["yhat"], out["s0"]["yhat"])


def test_new_series_forecast_without_refit(fitted):
    gf, _ = fitted
    before = gf.predict()
    new = gf.predict({"fresh": 100 + np.sin(np.arange(30)), "one": [7.0]}, level=95)
    assert new["fresh"]["yhat"].shape == (4,) and new["one"]["hi-95"].shape == (4,)
    assert 80 < new["fresh"]["yhat"].mean() < 120  # in the units of its own history
    after = gf.predict()
    assert all(np.array_equal(before[k]["yhat"], after[k]["yhat"]) for k in before)


def test_intervals_ordered_and_widen_with_level(fitted):
    gf, _ = fitted
    out = gf.predict(level=[50, 80, 95])
    for v in out.values():
        assert np.all(v["lo-95"] <= v["lo-80"]) and np.all(v["lo-80"] <= v["lo-50"])
        assert np.all(v["lo-50"] <= v["yhat"]) and np.all(v["yhat"] <= v["hi-50"])
        assert np.all(v["hi-50"] <= v["hi-80"]) and np.all(v["hi-80"] <= v["hi-95"])
        assert np.all(v["hi-95"] - v["lo-95"] > v["hi-50"] - v["lo-50"])


def test_intervals_ordered_at_every_level_after_calibration(fitted):
    gf, _ = fitted
    assert gf.calibration_ is not None
    levels = [1, 10, 50, 80, 90, 95, 99, 99.9]
    out = gf.predict(level=levels)
    for v in out.values():
        los = [v[f"lo-{lv:g}"] for lv in levels][::-1]
        his = [v[f"hi-{lv:g}"] for lv in levels]
        bounds = np.stack(los + [v["yhat"]] + his)
        assert np.isfinite(bounds).all() and (np.diff(bounds, axis=0) >= 0).all()


# ---------------------------------------------------------------------------------- calibration


def test_calibration_factor_is_finite_and_positive(fitted):
    from numrnn.forecast.calibration import CALIBRATION_RANGE

    c = fitted[0].calibration_
    assert isinstance(c, float) and np.isfinite(c) and CALIBRATION_RANGE[0] <= c <= CALIBRATION_RANGE[1]


def test_no_validation_windows_no_calibration():
    data = {"a": np.arange(1.0, 8.0), "b": np.arange(2.0, 9.0)}  # 7 values < 2 * horizon + 1
    gf = GlobalForecaster(horizon=4, seed=0, **TINY).fit(data, progress=False)
    assert gf.calibration_ is None and sorted(gf.unvalidated_ids_) == ["a", "b"]
    assert gf.predict(level=80)["a"]["hi-80"].shape == (4,)


def _mixtures(n_windows, h, members=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 0.3, (members, n_windows, h))
    sigma = rng.uniform(0.5, 1.5, (members, n_windows, h))
    return rng, mu, sigma


def _served_coverage(c, mu, sigma, target, level):
    """Share of ``target`` inside the central ``level`` % intervals of the mixtures under factor ``c``."""
    from numrnn.forecast.calibration import interval_probs, mixture_cdf

    _, lo, hi = interval_probs(c, [level])
    f = mixture_cdf(mu, sigma, target)
    return np.mean((f >= lo) & (f <= hi))


@pytest.mark.parametrize("spread", [0.5, 1.0, 2.0])
def test_calibrate_spread_recovers_the_spread_and_nominal_coverage(spread):
    # targets drawn with `spread` times the mixtures' own spread: too wide, right and too narrow
    from numrnn.forecast.calibration import calibrate_spread

    rng, mu, sigma = _mixtures(400, 6)
    member = rng.integers(0, 3, (400, 6))
    pick = np.take_along_axis(mu, member[None], 0)[0], np.take_along_axis(sigma, member[None], 0)[0]
    target = pick[0] + spread * pick[1] * rng.normal(size=(400, 6))
    c = calibrate_spread(mu, sigma, target)
    assert abs(c / spread - 1) < 0.15, c  # the mixtures' spread (between members too) is near sigma's
    assert calibrate_spread(mu, sigma, target) == c  # deterministic
    # held-out draws from the same distribution: near nominal (2,400 values: +-3 sd < 0.03)
    fresh = pick[0] + spread * pick[1] * rng.normal(size=(400, 6))
    for level in (50, 80, 95):
        assert abs(_served_coverage(c, mu, sigma, fresh, level) - level / 100) <= 0.04


def test_interval_probs_without_and_with_a_unit_factor():
    from numrnn.forecast.calibration import interval_probs

    assert interval_probs(None, [80, 95]) == [0.5, 0.5 - 80 / 200, 0.5 + 80 / 200, 0.5 - 95 / 200, 0.5 + 95 / 200]
    np.testing.assert_allclose(interval_probs(1.0, [80, 95]), [0.5, 0.1, 0.9, 0.025, 0.975], rtol=1e-12)
    wide = interval_probs(1.5, [80, 95])
    assert 0 < wide[3] < wide[1] < 0.1 and 0.9 < wide[2] < wide[4] < 1


def known_noise(n_series=40, seed=1, season=12, noise=0.05):
    """Seasonal series with Gaussian noise of a known relative size on the log scale."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        n = int(rng.integers(80, 141))
        t = np.arange(n)
        log_y = (np.log(rng.uniform(20, 200)) + 0.2 * np.sin(2 * np.pi * t / season + rng.uniform(0, 2 * np.pi))
                 + noise * rng.normal(size=n))
        out[f"k{i}"] = np.exp(log_y)
    return out


def test_coverage_near_nominal_on_a_panel_with_known_noise():
    h = 12
    data = known_noise()
    train = {k: v[:-h] for k, v in data.items()}
    test = {k: v[-h:] for k, v in data.items()}
    gf = GlobalForecaster(horizon=h, season_length=12, seed=0, hidden_size=16, epochs=30, steps_per_epoch=20,
                          ensemble=2, patience=5).fit(train, progress=False)
    fc = gf.predict(level=[80, 95])
    truth = np.concatenate([test[k] for k in test])
    cover = {lv: np.mean((truth >= np.concatenate([fc[k][f"lo-{lv}"] for k in test]))
                         & (truth <= np.concatenate([fc[k][f"hi-{lv}"] for k in test]))) for lv in (80, 95)}
    # 480 held-out values: a loose bound (3 binomial sd at 80 % is 0.055), the model's own error on top
    assert abs(cover[80] - 0.80) <= 0.1, cover
    assert abs(cover[95] - 0.95) <= 0.06, cover


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells(cell):
    gf = GlobalForecaster(horizon=3, cell=cell, seed=1, **TINY).fit(panel(3), progress=False)
    assert gf.predict()["s0"]["yhat"].shape == (3,)


def test_same_seed_same_forecast_bit_for_bit():
    data = panel(4, seed=3)
    a = GlobalForecaster(horizon=3, seed=5, **TINY).fit(data, progress=False).predict(level=[80])
    b = GlobalForecaster(horizon=3, seed=5, **TINY).fit(data, progress=False).predict(level=[80])
    c = GlobalForecaster(horizon=3, seed=6, **TINY).fit(data, progress=False).predict(level=[80])
    for k in data:
        for col in a[k]:
            assert a[k][col].tobytes() == b[k][col].tobytes()
    assert not all(np.array_equal(a[k]["yhat"], c[k]["yhat"]) for k in data)


def test_save_load_round_trip_bitwise(fitted, tmp_path):
    gf, data = fitted
    path = tmp_path / "model.npz"
    gf.save(path)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    loaded = GlobalForecaster.load(path)
    assert loaded.get_params() == gf.get_params()
    assert loaded.untrained_ids_ == gf.untrained_ids_ and loaded.lookback_ == gf.lookback_
    assert np.float64(loaded.calibration_).tobytes() == np.float64(gf.calibration_).tobytes()
    a, b = gf.predict(level=[80, 95]), loaded.predict(level=[80, 95])
    for k in a:
        for col in a[k]:
            assert a[k][col].tobytes() == b[k][col].tobytes()
    new = {"x": np.linspace(1, 9, 17)}
    assert gf.predict(new)["x"]["yhat"].tobytes() == loaded.predict(new)["x"]["yhat"].tobytes()
    # a corrupt file is a clear ValueError
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        GlobalForecaster.load(tmp_path / "bad.npz")


def test_load_file_without_calibration_and_bad_calibration(fitted, tmp_path):
    from numrnn import io as nio

    gf, _ = fitted
    gf.save(tmp_path / "model.npz")
    config, arrays = nio.load_npz(tmp_path / "model.npz", kind="global_forecaster")
    # a file written before the calibration existed: no key, no array; it loads uncalibrated
    old_config = {k: v for k, v in config.items() if k != "calibrated"}
    old_arrays = {k: v for k, v in arrays.items() if k != "calibration/factor"}
    nio.save_npz(tmp_path / "old.npz", "global_forecaster", old_config, old_arrays)
    old = GlobalForecaster.load(tmp_path / "old.npz")
    assert old.calibration_ is None
    uncalibrated = GlobalForecaster(**gf.get_params())
    uncalibrated._fitted = {**gf._fitted, "calibration": None}
    a, b = old.predict(level=[80]), uncalibrated.predict(level=[80])
    assert all(a[k][c].tobytes() == b[k][c].tobytes() for k in a for c in a[k])
    assert not np.array_equal(a["s0"]["hi-80"], gf.predict(level=[80])["s0"]["hi-80"])
    for value in (np.nan, 0.0, -1.0, 1e6):
        bad = {**arrays, "calibration/factor": np.array(value)}
        nio.save_npz(tmp_path / "bad.npz", "global_forecaster", config, bad)
        with pytest.raises(ValueError, match="must be a factor in"):
            GlobalForecaster.load(tmp_path / "bad.npz")
    nio.save_npz(tmp_path / "missing.npz", "global_forecaster", config, old_arrays)
    with pytest.raises(ValueError, match="calibration/factor"):
        GlobalForecaster.load(tmp_path / "missing.npz")
    nio.save_npz(tmp_path / "extra.npz", "global_forecaster", old_config, arrays)
    with pytest.raises(ValueError, match="unexpected arrays"):
        GlobalForecaster.load(tmp_path / "extra.npz")


def test_file_without_anchor_seasons_forecasts_as_it_was_fitted(fitted, tmp_path):
    """Files written before the anchor read every whole season of a window averaged at most three:
    they load with anchor_seasons = 3, and forecast as a model with that cap."""
    from numrnn import io as nio

    gf, data = fitted
    assert gf._fitted["anchor_seasons"] == gf.lookback_ // gf.season_length_ == 4
    gf.save(tmp_path / "model.npz")
    config, arrays = nio.load_npz(tmp_path / "model.npz", kind="global_forecaster")
    assert config["anchor_seasons"] == 4
    nio.save_npz(tmp_path / "old.npz", "global_forecaster",
                 {k: v for k, v in config.items() if k != "anchor_seasons"}, arrays)
    old = GlobalForecaster.load(tmp_path / "old.npz")
    assert old._fitted["anchor_seasons"] == 3
    capped = GlobalForecaster(**gf.get_params())
    capped._fitted = {**gf._fitted, "anchor_seasons": 3}
    a, b, now = old.predict(level=[80]), capped.predict(level=[80]), gf.predict(level=[80])
    assert all(a[k][c].tobytes() == b[k][c].tobytes() for k in a for c in a[k])
    assert not np.array_equal(a["s0"]["yhat"], now["s0"]["yhat"])  # s0 has more than 3 whole seasons
    nio.save_npz(tmp_path / "bad.npz", "global_forecaster", {**config, "anchor_seasons": -1}, arrays)
    with pytest.raises(ValueError, match="anchor_seasons"):
        GlobalForecaster.load(tmp_path / "bad.npz")


def test_series_table_rows_unseen_keys_and_without_it(fitted, tmp_path):
    """One learned row per training series (series_embedding, the default); an unseen key takes the
    rows' mean, so with every row set to the mean a training series forecasts as a new key with its
    history does; series_embedding=False has no table, and a file without one loads as such."""
    from numrnn import io as nio

    gf, data = fitted
    assert gf.series_embedding is True
    for net in gf._fitted["members"]:
        table = net.params["series.weight"]
        assert table.shape == (len(data), 2 * gf.horizon) and np.isfinite(table).all() and table.any()
    new = gf.predict({"unseen": data["s0"]}, level=[80])["unseen"]
    flat = GlobalForecaster(**gf.get_params())
    members = []
    for net in gf._fitted["members"]:
        copy = type(net)(gf._fitted["specs"], (0, 0))
        copy.load_state_dict(net.state_dict())
        copy.eval()
        copy.params["series.weight"][...] = net.params["series.weight"].mean(axis=0)
        members.append(copy)
    flat._fitted = {**gf._fitted, "members": members}
    own = flat.predict(level=[80])["s0"]
    for col in new:
        np.testing.assert_allclose(new[col], own[col], rtol=1e-6)
    assert not np.allclose(gf.predict()["s0"]["yhat"], new["yhat"], rtol=1e-6)  # its own row differs from the mean
    # a series too short to train on ("tiny") kept a zero row: it forecasts from the mean row, as a new key
    tiny = gf.predict(level=[80])["tiny"]
    renamed = {("tiny (new)" if k == "tiny" else k): y for k, y in data.items()}  # the same batch, in order
    as_new = gf.predict(renamed, level=[80])["tiny (new)"]
    assert all(tiny[c].tobytes() == as_new[c].tobytes() for c in tiny)
    plain = GlobalForecaster(horizon=4, season_length=4, seed=0, series_embedding=False, **TINY).fit(data,
                                                                                                  progress=False)
    assert not any(k.startswith("series.") for k in plain._fitted["members"][0].params)
    assert repr(plain).count("series_embedding=False") == 1
    # a file written before the table: no series_table, no series_embedding parameter, no table arrays
    plain.save(tmp_path / "plain.npz")
    config, arrays = nio.load_npz(tmp_path / "plain.npz", kind="global_forecaster")
    assert config["series_table"] is False
    old_config = {k: v for k, v in config.items() if k != "series_table"}
    old_config["params"] = {k: v for k, v in config["params"].items() if k != "series_embedding"}
    nio.save_npz(tmp_path / "old.npz", "global_forecaster", old_config, arrays)
    old = GlobalForecaster.load(tmp_path / "old.npz")
    assert old.series_embedding is False
    a, b = old.predict(level=[80]), plain.predict(level=[80])
    assert all(a[k][c].tobytes() == b[k][c].tobytes() for k in a for c in a[k])
    # and a file whose config claims a table its arrays lack is refused
    gf.save(tmp_path / "table.npz")
    config, arrays = nio.load_npz(tmp_path / "table.npz", kind="global_forecaster")
    nio.save_npz(tmp_path / "bad.npz", "global_forecaster", config,
                 {k: v for k, v in arrays.items() if "series." not in k})
    with pytest.raises(ValueError, match="series"):
        GlobalForecaster.load(tmp_path / "bad.npz")


def test_cross_validation_arrays(fitted):
    gf, _ = fitted
    data = panel(4, seed=2, low=30, high=40)
    cv = gf.cross_validation(data, n_windows=2, step_size=3)
    assert set(cv) == {"unique_id", "ds", "cutoff", "y", "yhat"}
    assert len(cv["y"]) == 4 * 2 * 4
    for k, y in data.items():
        rows = cv["unique_id"] == k
        cutoffs = sorted(set(cv["cutoff"][rows].tolist()))
        assert cutoffs == [len(y) - 4 - 3 - 1, len(y) - 4 - 1]
        np.testing.assert_array_equal(cv["y"][rows], y[cv["ds"][rows]])
    assert np.all(cv["ds"] > cv["cutoff"])


def test_cross_validation_intervals_are_predicts_calibrated_ones(fitted):
    gf, _ = fitted
    data = panel(4, seed=2, low=30, high=40)
    cv = gf.cross_validation(data, n_windows=1, level=[80])
    model = type(gf)(**gf.get_params()).fit({k: y[:-gf.horizon] for k, y in data.items()}, progress=False)
    assert model.calibration_ is not None and model.calibration_ != 1.0
    out = model.predict(level=[80])
    for k in data:
        rows = cv["unique_id"] == k
        np.testing.assert_array_equal(cv["yhat-lo-80"][rows], out[k]["lo-80"])
        np.testing.assert_array_equal(cv["yhat-hi-80"][rows], out[k]["hi-80"])


# ---------------------------------------------------------------------------------- DataFrame path


def test_dataframe_path_unsorted_with_calendar_and_future_dates():
    pd = pytest.importorskip("pandas")
    data = panel(5, seed=4)
    df = as_frame(data).sample(frac=1.0, random_state=0)  # unsorted rows are sorted
    gf = GlobalForecaster(horizon=6, seed=0, **TINY).fit(df, progress=False)
    assert gf.season_length_ == 12 and gf.calendar_ is True  # monthly, inferred
    fc = gf.predict(level=[80, 95])
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "yhat-lo-80", "yhat-hi-80", "yhat-lo-95", "yhat-hi-95"]
    assert len(fc) == 5 * 6
    for k, y in data.items():
        rows = fc[fc.unique_id == k]
        last = df[df.unique_id == k].ds.max()
        expected = pd.date_range(last, periods=7, freq="MS")[1:]
        assert list(rows.ds) == list(expected)
    # the same forecasts as the sorted frame
    sorted_fc = GlobalForecaster(horizon=6, seed=0, **TINY).fit(as_frame(data), progress=False).predict(level=[80, 95])
    pd.testing.assert_frame_equal(fc, sorted_fc)
    # a new, unseen series through a DataFrame; a dict is refused (calendar features need ds)
    new = gf.predict(as_frame({"new": 50 + np.sin(np.arange(40))}, start="2010-01-01"))
    assert list(new.unique_id.unique()) == ["new"] and len(new) == 6
    with pytest.raises(ValueError, match="calendar"):
        gf.predict({"new": np.ones(30)})


def test_dataframe_integer_ds_and_cross_validation(tmp_path):
    pytest.importorskip("pandas")
    data = panel(4, seed=5, low=30, high=40)
    df = as_frame(data, ints=True)
    gf = GlobalForecaster(horizon=3, seed=0, **TINY).fit(df, progress=False)
    assert gf.season_length_ == 1 and gf.calendar_ is False
    fc = gf.predict()
    last = df.groupby("unique_id").ds.max()
    for k in data:
        assert list(fc[fc.unique_id == k].ds) == [last[k] + 3, last[k] + 6, last[k] + 9]
    gf.save(tmp_path / "m.npz")
    assert GlobalForecaster.load(tmp_path / "m.npz").predict().equals(fc)
    cv = gf.cross_validation(df, n_windows=3, step_size=2, level=[80])
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "yhat", "yhat-lo-80", "yhat-hi-80"]
    assert len(cv) == 4 * 3 * 3
    assert all(g.cutoff.nunique() == 3 for _, g in cv.groupby("unique_id"))
    merged = cv.merge(df, on=["unique_id", "ds"], suffixes=("", "_true"))
    np.testing.assert_array_equal(merged.y, merged.y_true)


def test_dataframe_monthly_calendar_save_load(tmp_path):
    pytest.importorskip("pandas")
    df = as_frame(panel(3, seed=6))
    gf = GlobalForecaster(horizon=4, seed=0, **TINY).fit(df, progress=False)
    gf.save(tmp_path / "m.npz")
    loaded = GlobalForecaster.load(tmp_path / "m.npz")
    assert loaded.calendar_ and loaded.predict(level=80).equals(gf.predict(level=80))


def test_import_numrnn_does_not_import_pandas():
    code = "import sys, numrnn, numrnn.forecast, numrnn.forecast.global_model; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- bad input


def test_bad_frames():
    pd = pytest.importorskip("pandas")
    df = as_frame(panel(2))
    gf = GlobalForecaster(horizon=3, **TINY)
    with pytest.raises(ValueError, match=r"\['ds'\]"):
        gf.fit(df.drop(columns="ds"))
    dup = pd.concat([df, df.iloc[[3]]])
    with pytest.raises(ValueError, match="duplicate"):
        gf.fit(dup)
    gap = df.drop(index=[5])
    with pytest.raises(ValueError, match="irregular.*s0"):
        gf.fit(gap)
    nan = df.copy()
    nan.loc[7, "y"] = np.nan
    with pytest.raises(ValueError, match="'y'.*NaN.*s0"):
        gf.fit(nan)
    with pytest.raises(TypeError, match="'ds'"):
        gf.fit(df.assign(ds=df.ds.astype(str)))
    with pytest.raises(TypeError, match="'y'"):
        gf.fit(df.assign(y="a"))
    with pytest.raises(ValueError, match="empty"):
        gf.fit(df.iloc[:0])
    assert not gf.is_fitted


def test_bad_arrays_and_arguments(fitted):
    gf, data = fitted
    before = gf.predict()
    with pytest.raises(ValueError, match=r"\['b'\].*NaN"):
        gf.fit({"a": np.ones(20), "b": [1.0, np.nan, 2.0]})
    with pytest.raises(ValueError, match=r"\['b'\].*empty"):
        gf.fit({"a": np.ones(20), "b": []})
    with pytest.raises(ValueError, match=r"\['a'\].*1-D"):
        gf.fit({"a": np.ones((5, 2))})
    with pytest.raises(ValueError, match="empty dict"):
        gf.fit({})
    with pytest.raises(TypeError, match="DataFrame"):
        gf.fit(np.ones(10))
    with pytest.raises(ValueError, match="horizon=4"):
        gf.fit({"a": np.ones(3), "b": np.arange(4.0)})
    for bad in (0, 100, -5, [80, 120]):
        with pytest.raises(ValueError, match="level"):
            gf.predict(level=bad)
    with pytest.raises(TypeError, match="level"):
        gf.predict(level="80")
    # nothing above changed the fitted state
    after = gf.predict()
    assert all(np.array_equal(before[k]["yhat"], after[k]["yhat"]) for k in before)
    with pytest.raises(RuntimeError, match="fit"):
        GlobalForecaster(horizon=3).predict()
    with pytest.raises(ValueError, match="horizon"):
        GlobalForecaster(horizon=0)
    with pytest.raises(ValueError, match="cell"):
        GlobalForecaster(horizon=3, cell="transformer")
    with pytest.raises(TypeError, match="seed"):
        GlobalForecaster(horizon=3, seed=1.5)
    with pytest.raises(TypeError, match="series_embedding"):
        GlobalForecaster(horizon=3, series_embedding="yes")


# ---------------------------------------------------------------------------------- quality


def synthetic(n_series=50, seed=0, season=12):
    """Seasonal sine + trend + noise, lengths 60-150, varied levels, amplitudes and phases."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        n = int(rng.integers(60, 151))
        t = np.arange(n)
        level = rng.uniform(20, 200)
        y = (level + rng.normal(0, 0.003) * level * t
             + rng.uniform(0.1, 0.3) * level * np.sin(2 * np.pi * t / season + rng.uniform(0, 2 * np.pi))
             + rng.uniform(0.02, 0.06) * level * rng.normal(size=n))
        out[f"s{i}"] = np.maximum(y, 1.0)
    return out


@pytest.fixture(scope="module")
def quality():
    h, m = 12, 12
    data = synthetic()
    train = {k: v[:-h] for k, v in data.items()}
    test = {k: v[-h:] for k, v in data.items()}
    gf = GlobalForecaster(horizon=h, season_length=m, seed=0, hidden_size=32, epochs=60, steps_per_epoch=25,
                          batch_size=64, ensemble=2, patience=10)
    gf.fit(train, progress=False)
    return gf.predict(level=[80, 95]), train, test, m


def test_synthetic_panel_beats_seasonal_naive(quality):
    fc, train, test, m = quality
    ratios = []
    for k in train:
        ours = metrics.mase(test[k], fc[k]["yhat"], train[k], m=m)
        naive = metrics.mase(test[k], metrics.seasonal_naive(train[k], len(test[k]), m=m), train[k], m=m)
        ratios.append(ours / naive)
    gmean = float(np.exp(np.mean(np.log(ratios))))
    assert gmean < 0.95, gmean


def test_synthetic_interval_coverage(quality):
    fc, _, test, _ = quality
    truth = np.concatenate([test[k] for k in test])
    cover = {lv: np.mean((truth >= np.concatenate([fc[k][f"lo-{lv}"] for k in test]))
                         & (truth <= np.concatenate([fc[k][f"hi-{lv}"] for k in test]))) for lv in (80, 95)}
    assert 0.6 <= cover[80] <= 0.97, cover
    assert 0.8 <= cover[95] <= 1.0, cover
    assert cover[95] >= cover[80]
