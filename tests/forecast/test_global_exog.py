"""GlobalForecaster with dynamic exogenous regressors: the DataFrame path (fit, predict(X_df=),
cross_validation), the windows and the per-series standardisation, bad input, determinism,
save/load, and a quality check on a panel driven by a known future promotion flag."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn import metrics
from numrnn.forecast import GlobalForecaster
from numrnn.forecast.preprocessing import ExogScaler
from numrnn.forecast.windows import Packed, batch

pd = pytest.importorskip("pandas")

TINY = dict(hidden_size=6, epochs=3, steps_per_epoch=4, batch_size=16, ensemble=2, patience=2)
H = 4


def promo_frame(n_series=6, n=40, seed=0, effect=0.8, price=False):
    """A monthly panel whose log level jumps by ``effect`` in promotion months (``promo`` known
    ahead), plus a price regressor when asked; ``n`` history values and ``H`` future rows."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        t = np.arange(n + H)
        promo = (rng.random(n + H) < 0.25).astype(np.float64)
        level = 50.0 * np.exp(rng.normal(0.0, 0.5))
        y = level * np.exp(0.1 * np.sin(2 * np.pi * (t + i) / 12) + effect * promo + 0.03 * rng.normal(size=n + H))
        cols = {"unique_id": f"s{i}", "ds": pd.date_range("2000-01-01", periods=n + H, freq="MS"), "y": y,
                "promo": promo}
        if price:
            cols["price"] = 2.0 + 0.1 * rng.normal(size=n + H)
        parts.append(pd.DataFrame(cols))
    full = pd.concat(parts, ignore_index=True)
    history = full.groupby("unique_id").head(n).reset_index(drop=True)
    future = full.groupby("unique_id").tail(H).reset_index(drop=True)
    return full, history, future


@pytest.fixture(scope="module")
def fitted():
    full, history, future = promo_frame(price=True)
    gf = GlobalForecaster(horizon=H, seed=0, **TINY).fit(history, progress=False)
    return gf, full, history, future


def bitwise_equal(a, b):
    return list(a.columns) == list(b.columns) and all(
        a[c].to_numpy().tobytes() == b[c].to_numpy().tobytes() for c in a.columns if c != "unique_id")


# ---------------------------------------------------------------------------------- windows and scaling


def test_exog_scaler_standardises_each_series_on_its_fitted_rows():
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, size=(30, 2))
    const = np.column_stack([np.full(10, 5.0), np.zeros(10)])  # constant: scaled by |mean|, or 1 at 0
    scaler = ExogScaler().fit([a, const], fit_lengths=[20, 10])
    np.testing.assert_allclose(scaler.mean[0], a[:20].mean(axis=0))
    np.testing.assert_allclose(scaler.std[0], a[:20].std(axis=0))
    np.testing.assert_array_equal(scaler.mean[1], [5.0, 0.0])
    np.testing.assert_array_equal(scaler.std[1], [5.0, 1.0])
    out = scaler.transform([a, const + 1.0])
    np.testing.assert_allclose(out[0][:20].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out[0][:20].std(axis=0), 1.0)
    np.testing.assert_allclose(out[1], [[0.2, 1.0]] * 10)


def test_batch_places_the_regressors_at_the_lookback_and_horizon_steps():
    rng = np.random.default_rng(1)
    zs = [rng.normal(size=9), rng.normal(size=5)]
    xs = [rng.normal(size=(9 + 2, 2)), rng.normal(size=(5 + 2, 2))]  # 2 known future rows each
    packed = Packed(zs, [0, 3], xs)
    assert packed.n_exog == 2
    lookback, h = 6, 2
    series, origin = np.array([0, 1, 0]), np.array([9, 5, 3])
    x, lengths, future, target, _ = batch(packed, series, origin, lookback, h, 4, True, np.float64,
                                          with_target=False)
    assert x.shape == (lookback, 3, 1 + 2 + 2) and future.shape == (3, (2 + 2) * h) and target is None
    for b, (s, t) in enumerate(zip(series, origin)):
        n_in = int(lengths[b])
        assert n_in == min(t, lookback)
        np.testing.assert_array_equal(x[:n_in, b, 3:], xs[s][t - n_in : t])  # the lookback steps
        np.testing.assert_array_equal(x[n_in:, b, 3:], 0.0)  # right padding
        # after the horizon sines and cosines: each regressor's horizon values in turn
        np.testing.assert_array_equal(future[b, 2 * h :], xs[s][t : t + h].T.reshape(-1))
    # without regressors the windows are those of before (value + calendar only)
    plain = batch(Packed(zs, [0, 3]), series, origin, lookback, h, 4, True, np.float64, with_target=False)
    np.testing.assert_array_equal(plain[0], x[:, :, :3])
    np.testing.assert_array_equal(plain[2], future[:, : 2 * h])


# ---------------------------------------------------------------------------------- the DataFrame path


def test_fit_takes_every_extra_numeric_column_and_predict_reads_x_df(fitted):
    gf, _, history, future = fitted
    assert gf.exog_names_ == ["promo", "price"]
    assert gf._fitted["specs"]["rnn"]["config"]["input_size"] == 1 + 2 + 2  # y, calendar, two regressors
    fc = gf.predict(X_df=future.drop(columns="y"), level=[80])
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "yhat-lo-80", "yhat-hi-80"] and len(fc) == 6 * H
    np.testing.assert_array_equal(fc.ds.to_numpy(), future.ds.to_numpy())
    assert np.isfinite(fc.yhat).all() and (fc["yhat-lo-80"] <= fc.yhat).all() and (fc.yhat <= fc["yhat-hi-80"]).all()
    # rows in any order, with rows of other series and later dates, give the same forecast
    extra = future.assign(unique_id="other")
    later = future.assign(ds=future.ds + pd.DateOffset(months=H))
    noisy = pd.concat([later, future, extra]).sample(frac=1.0, random_state=0)
    assert bitwise_equal(gf.predict(X_df=noisy, level=[80]), fc)
    # the forecast reads the future values
    flipped = future.assign(promo=1.0 - future.promo)
    assert not np.array_equal(gf.predict(X_df=flipped).yhat.to_numpy(), fc.yhat.to_numpy())


def test_exog_choice_bool_columns_and_ignored_extras():
    _, history, future = promo_frame(n_series=4)
    history = history.assign(promo=history.promo.astype(bool), note="text")
    gf = GlobalForecaster(horizon=H, seed=0, **TINY)
    with pytest.raises(TypeError, match=r"\['note'\].*exog=\[\.\.\.\]"):
        gf.fit(history, progress=False)
    assert not gf.is_fitted
    gf.fit(history, progress=False, exog=["promo"])
    assert gf.exog_names_ == ["promo"]
    out = gf.predict(X_df=future.assign(promo=future.promo.astype(bool)))
    assert np.isfinite(out.yhat).all()
    none = GlobalForecaster(horizon=H, seed=0, **TINY).fit(history, progress=False, exog=[])
    assert none.exog_names_ == [] and np.isfinite(none.predict().yhat).all()


def test_new_history_forecasts_unseen_series(fitted):
    gf, _, _, _ = fitted
    full, history, future = promo_frame(n_series=2, seed=5, price=True)
    history = history.assign(unique_id="new-" + history.unique_id)
    future = future.assign(unique_id="new-" + future.unique_id)
    before = gf.predict(X_df=fitted[3])
    fc = gf.predict(history, X_df=future, level=95)
    assert sorted(fc.unique_id.unique()) == ["new-s0", "new-s1"] and np.isfinite(fc["yhat-hi-95"]).all()
    assert bitwise_equal(gf.predict(X_df=fitted[3]), before)


def test_same_seed_same_forecast_bit_for_bit():
    _, history, future = promo_frame(n_series=4, seed=3)
    a = GlobalForecaster(horizon=H, seed=11, **TINY).fit(history, progress=False).predict(X_df=future, level=[80])
    b = GlobalForecaster(horizon=H, seed=11, **TINY).fit(history, progress=False).predict(X_df=future, level=[80])
    assert bitwise_equal(a, b)


def test_cross_validation_reads_the_future_regressors_from_the_data():
    full, history, future = promo_frame(n_series=4, seed=2)
    gf = GlobalForecaster(horizon=H, seed=0, **TINY)
    cv = gf.cross_validation(full, n_windows=2, level=[80])
    assert not gf.is_fitted and len(cv) == 2 * 4 * H and np.isfinite(cv.yhat).all()
    # the last window is the fit on the history and its forecast with the regressors' future
    last = cv[cv.cutoff == cv.cutoff.max()].reset_index(drop=True)
    fc = GlobalForecaster(horizon=H, seed=0, **TINY).fit(history, progress=False).predict(X_df=future)
    assert last.yhat.to_numpy().tobytes() == fc.yhat.to_numpy().tobytes()
    np.testing.assert_array_equal(last.y.to_numpy(), future.y.to_numpy())
    # exog=[] in cross-validation: no regressors, a different forecast
    plain = gf.cross_validation(full, n_windows=1, exog=[])
    assert not np.array_equal(plain.yhat.to_numpy(), last.yhat.to_numpy())


def test_save_load_round_trip_and_files_without_exog(fitted, tmp_path):
    from numrnn import io as nio

    gf, _, _, future = fitted
    gf.save(tmp_path / "model.npz")
    loaded = GlobalForecaster.load(tmp_path / "model.npz")
    assert loaded.exog_names_ == ["promo", "price"]
    assert bitwise_equal(loaded.predict(X_df=future, level=[80, 95]), gf.predict(X_df=future, level=[80, 95]))
    with pytest.raises(ValueError, match="X_df"):
        loaded.predict()
    config, arrays = nio.load_npz(tmp_path / "model.npz", kind="global_forecaster")
    assert arrays["data/exog"].shape == (6 * 40, 2)
    bad = {**arrays, "data/exog": np.full_like(arrays["data/exog"], np.nan)}
    nio.save_npz(tmp_path / "bad.npz", "global_forecaster", config, bad)
    with pytest.raises(ValueError, match="data/exog"):
        GlobalForecaster.load(tmp_path / "bad.npz")
    missing = {k: v for k, v in arrays.items() if k != "data/exog"}
    nio.save_npz(tmp_path / "missing.npz", "global_forecaster", config, missing)
    with pytest.raises(ValueError, match="data/exog"):
        GlobalForecaster.load(tmp_path / "missing.npz")
    # a file of a model without regressors, written before they existed (no 'exog' key), loads as before
    _, history, _ = promo_frame(n_series=3)
    plain = GlobalForecaster(horizon=H, seed=0, **TINY).fit(history, progress=False, exog=[])
    plain.save(tmp_path / "plain.npz")
    config, arrays = nio.load_npz(tmp_path / "plain.npz", kind="global_forecaster")
    assert config["exog"] == [] and "data/exog" not in arrays
    nio.save_npz(tmp_path / "old.npz", "global_forecaster", {k: v for k, v in config.items() if k != "exog"}, arrays)
    old = GlobalForecaster.load(tmp_path / "old.npz")
    assert old.exog_names_ == [] and bitwise_equal(old.predict(), plain.predict())


# ---------------------------------------------------------------------------------- bad input


def test_bad_exog_at_fit():
    _, history, _ = promo_frame(n_series=3)
    gf = GlobalForecaster(horizon=H, **TINY)
    nan = history.copy()
    nan.loc[5, "promo"] = np.nan
    with pytest.raises(ValueError, match="'promo'.*NaN.*s0"):
        gf.fit(nan, progress=False)
    with pytest.raises(ValueError, match="'promo'.*NaN or inf"):
        gf.fit(history.assign(promo=np.where(history.index == 50, np.inf, history.promo)), progress=False)
    with pytest.raises(ValueError, match=r"lacks exogenous column\(s\) \['price'\]"):
        gf.fit(history, progress=False, exog=["promo", "price"])
    with pytest.raises(ValueError, match=r"\['y'\]"):
        gf.fit(history, progress=False, exog=["y"])
    with pytest.raises(TypeError, match="list of column names"):
        gf.fit(history, progress=False, exog="promo")
    with pytest.raises(ValueError, match="carries no exogenous"):
        gf.fit({"a": np.arange(20.0)}, progress=False, exog=["promo"])
    # a fit on Dask takes regressors too (tests/integrations/test_dask_training.py); a bad client is
    # refused before anything runs
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        gf.fit(history, progress=False, client=object())
    assert not gf.is_fitted


def test_bad_x_df_at_predict(fitted):
    gf, _, history, future = fitted
    before = gf.predict(X_df=future)
    with pytest.raises(ValueError, match=r"fitted with the exogenous regressors \['promo', 'price'\].*X_df"):
        gf.predict()
    with pytest.raises(TypeError, match="X_df must be a pandas DataFrame"):
        gf.predict(X_df=future.to_numpy())
    with pytest.raises(ValueError, match=r"X_df lacks column\(s\) \['price'\]"):
        gf.predict(X_df=future.drop(columns="price"))
    with pytest.raises(ValueError, match="unique_id 's2'.*1 of its 4 forecast dates.*first 2003-06-01"):
        gf.predict(X_df=future.drop(index=[9]))
    with pytest.raises(ValueError, match="unique_id 's5'.*4 of its 4"):
        gf.predict(X_df=future[future.unique_id != "s5"])
    nan = future.copy()
    nan.loc[6, "price"] = np.nan
    with pytest.raises(ValueError, match="'price' of X_df has NaN or inf for unique_id \\['s1'\\]"):
        gf.predict(X_df=nan)
    with pytest.raises(ValueError, match="duplicate"):
        gf.predict(X_df=pd.concat([future, future.iloc[[2]]]))
    with pytest.raises(TypeError, match="'ds' of X_df must hold datetimes"):
        gf.predict(X_df=future.assign(ds=np.arange(len(future))))
    with pytest.raises(TypeError, match="'promo'.*not numeric"):
        gf.predict(X_df=future.assign(promo="yes"))
    # new history without a regressor column; arrays; a client
    with pytest.raises(ValueError, match=r"lacks exogenous column\(s\) \['price'\]"):
        gf.predict(history.drop(columns="price"), X_df=future)
    with pytest.raises(ValueError, match="exogenous regressors.*DataFrame"):
        gf.predict({"a": np.arange(1.0, 30.0)}, X_df=future)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):  # (on Dask: test_dask_training.py)
        gf.predict(X_df=future, client=object())
    # a model without regressors refuses X_df
    plain = GlobalForecaster(horizon=H, seed=0, **TINY).fit(history, progress=False, exog=[])
    with pytest.raises(ValueError, match="fitted without any"):
        plain.predict(X_df=future)
    assert bitwise_equal(gf.predict(X_df=future), before)  # failed calls changed nothing


# ---------------------------------------------------------------------------------- quality


def test_a_known_future_promotion_cuts_the_error():
    """On a seeded panel where promotions lift y by e^0.8, the regressor much lowers MASE (a loose bar)."""
    _, history, future = promo_frame(n_series=30, n=72, seed=0)
    settings = dict(hidden_size=16, epochs=30, steps_per_epoch=20, batch_size=32, ensemble=1, patience=5)
    with_exog = GlobalForecaster(horizon=H, seed=0, **settings).fit(history, progress=False)
    without = GlobalForecaster(horizon=H, seed=0, **settings).fit(history, progress=False, exog=[])

    def mean_mase(fc):
        out = []
        for key, g in fc.groupby("unique_id"):
            truth = future.y[future.unique_id == key].to_numpy()
            train = history.y[history.unique_id == key].to_numpy()
            out.append(metrics.mase(truth, g.yhat.to_numpy(), train, m=12))
        return float(np.mean(out))

    exog_mase, plain_mase = mean_mase(with_exog.predict(X_df=future)), mean_mase(without.predict())
    assert exog_mase < 0.7 * plain_mase, (exog_mase, plain_mase)
