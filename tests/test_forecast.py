"""Forecaster: shapes, determinism, save/load, uncertainty, backtests, bad input, quality bar."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

from numrnn import metrics
from numrnn.datasets import load_airline, load_sunspots
from numrnn.forecast import Forecaster, backtest

TINY = dict(lookback=6, horizon=3, hidden_size=4, epochs=3, ensemble=1, patience=2)


def series(n=60, k=None, seed=0):
    t = np.arange(n, dtype=float)
    y = 10 + 0.1 * t + np.sin(2 * np.pi * t / 6) + 0.1 * np.random.default_rng(seed).normal(size=n)
    return y if k is None else np.stack([y * (j + 1) for j in range(k)], axis=1)


@pytest.fixture(scope="module")
def fitted():
    return Forecaster(**TINY).fit(series(), progress=False)


def test_fit_predict_shapes(fitted):
    y = series()
    assert fitted.predict(y).shape == (3,)
    assert fitted.predict(y[:6]).shape == (3,)  # only `lookback` values are needed
    assert fitted.is_fitted and len(fitted.history_) == 1 and fitted.seed_ == 0
    two = Forecaster(**TINY).fit(series(k=2), progress=False)
    assert two.predict(series(k=2)).shape == (3, 2)


def test_same_seed_same_forecast_bit_for_bit():
    y = series()
    a = Forecaster(**dict(TINY, ensemble=2), seed=7).fit(y, progress=False).predict(y)
    b = Forecaster(**dict(TINY, ensemble=2), seed=7).fit(y, progress=False).predict(y)
    c = Forecaster(**dict(TINY, ensemble=2), seed=8).fit(y, progress=False).predict(y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_float32_and_transforms(cell):
    y = series()
    f = Forecaster(cell=cell, dtype=np.float32, transform="none", **TINY).fit(y, progress=False)
    assert np.all(np.isfinite(f.predict(y)))
    g = Forecaster(cell=cell, transform="log", **TINY).fit(y, progress=False)
    assert g._fitted["scaler"]["log"].tolist() == [True]


def test_auto_transform_logs_only_positive_columns():
    y = series(k=2)
    y[:, 1] -= 25  # crosses zero
    f = Forecaster(**TINY).fit(y, progress=False)
    assert f._fitted["scaler"]["log"].tolist() == [True, False]


def test_learns_a_pure_seasonal_pattern():
    """A noiseless season is forecast far better than the naive last value."""
    t = np.arange(120, dtype=float)
    y = 5 + np.sin(2 * np.pi * t / 8)
    f = Forecaster(lookback=16, horizon=8, hidden_size=8, ensemble=1, epochs=80, seed=0).fit(y[:-8], progress=False)
    assert metrics.mae(y[-8:], f.predict(y[:-8])) < 0.5 * metrics.mae(y[-8:], metrics.seasonal_naive(y[:-8], 8, m=1))


def test_exog_is_used():
    n = 80
    rng = np.random.default_rng(0)
    exog = rng.normal(size=(n + 3, 1))
    y = 10 + np.convolve(exog[:, 0], [1.0], mode="same")[: n + 3]  # y follows the covariate exactly
    f = Forecaster(**dict(TINY, epochs=100, hidden_size=8, validation=0)).fit(y[:n], exog=exog[:n], progress=False)
    pred = f.predict(y[:n], exog=exog[:n], exog_future=exog[n:])
    assert pred.shape == (3,)
    assert metrics.mae(y[n:], pred) < metrics.mae(y[n:], np.full(3, y[:n].mean()))
    with pytest.raises(ValueError, match="exog and exog_future are required"):
        f.predict(y[:n])
    with pytest.raises(ValueError, match="exog_future must have 3 rows"):
        f.predict(y[:n], exog=exog[:n], exog_future=exog[:2])
    with pytest.raises(ValueError, match=r"exog must have 80 rows"):
        f.predict(y[:n], exog=exog[:5], exog_future=exog[:3])


def test_gaussian_loss_gives_std():
    y = series()
    f = Forecaster(loss="gaussian", **dict(TINY, ensemble=2)).fit(y, progress=False)
    mean, std = f.predict(y, return_std=True)
    assert mean.shape == std.shape == (3,)
    assert np.all(std > 0) and np.all(np.isfinite(std))
    np.testing.assert_array_equal(mean, f.predict(y))
    with pytest.raises(ValueError, match="needs loss='gaussian'"):
        Forecaster(**TINY).fit(y, progress=False).predict(y, return_std=True)


def test_lbfgs_and_other_optimizers():
    y = series()
    for opt in ("lbfgs", "sgd", "adamw"):
        f = Forecaster(optimizer=opt, **TINY).fit(y, progress=False)
        assert np.all(np.isfinite(f.predict(y)))


def test_no_validation_runs_all_epochs():
    f = Forecaster(validation=0, **TINY).fit(series(), progress=False)
    assert f.history_[0]["epochs_run"] == 3 and f.history_[0]["val_loss"] == []


def test_progress_bar(capsys):
    Forecaster(**TINY).fit(series(), progress=True)
    assert "member 1/1" in capsys.readouterr().err
    Forecaster(**TINY).fit(series(), progress=False)
    assert capsys.readouterr().err == ""


def test_save_load_round_trip_bit_exact(tmp_path):
    y = series()
    f = Forecaster(**dict(TINY, ensemble=2), loss="gaussian").fit(y, progress=False)
    path = tmp_path / "f.npz"
    f.save(path)
    g = Forecaster.load(path)
    assert g.get_params() == f.get_params()
    for a, b in zip(f.predict(y, return_std=True), g.predict(y, return_std=True)):
        np.testing.assert_array_equal(a, b)
    for net_f, net_g in zip(f._fitted["members"], g._fitted["members"]):
        for k, v in net_f.state_dict().items():
            np.testing.assert_array_equal(net_g.state_dict()[k], v)
    for opt_f, opt_g in zip(f._fitted["optimizers"], g._fitted["optimizers"]):
        assert opt_g.steps == opt_f.steps
        for k, st in opt_f.state.items():
            for slot, value in st.items():
                np.testing.assert_array_equal(opt_g.state[k][slot], value)
    assert g.history_[0]["epochs_run"] == f.history_[0]["epochs_run"]
    lb = Forecaster(optimizer="lbfgs", **TINY).fit(y, progress=False)
    lb.save(path)
    np.testing.assert_array_equal(Forecaster.load(path).predict(y), lb.predict(y))


def test_interrupted_save_keeps_the_previous_model(tmp_path, monkeypatch, fitted):
    path = tmp_path / "f.npz"
    fitted.save(path)
    before = path.read_bytes()
    other = Forecaster(**dict(TINY, seed=3)).fit(series(), progress=False)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["f.npz"]
    np.testing.assert_array_equal(Forecaster.load(path).predict(series()), fitted.predict(series()))


def test_load_rejects_bad_files(tmp_path, fitted):
    path = tmp_path / "f.npz"
    fitted.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        Forecaster.load(tmp_path / "cut.npz")
    from numrnn import io as nio

    config, arrays = nio.load_npz(path)
    arrays["member0/head.weight"] = np.zeros((2, 2))
    nio.save_npz(tmp_path / "shape.npz", "forecaster", config, arrays)
    with pytest.raises(ValueError, match="do not fit its configuration"):
        Forecaster.load(tmp_path / "shape.npz")
    config2, arrays2 = nio.load_npz(path)
    del arrays2["scaler/scale"]
    nio.save_npz(tmp_path / "missing.npz", "forecaster", config2, arrays2)
    with pytest.raises(ValueError, match="lacks 'scaler/scale'"):
        Forecaster.load(tmp_path / "missing.npz")
    nio.save_npz(tmp_path / "kind.npz", "module", config, arrays)
    with pytest.raises(ValueError, match="expected a 'forecaster'"):
        Forecaster.load(tmp_path / "kind.npz")
    with pytest.raises(FileNotFoundError):
        Forecaster.load(tmp_path / "nothing.npz")


def test_backtest_folds():
    y = series(80)
    folds = backtest(Forecaster(**TINY), y, folds=3, m=6)
    assert [f["origin"] for f in folds] == [71, 74, 77]
    for fold in folds:
        assert set(fold) >= {"fold", "origin", "mae", "rmse", "smape", "mase", "forecast"}
        assert fold["forecast"].shape == (3,) and math.isfinite(fold["mase"])
    assert [f["origin"] for f in backtest(Forecaster(**TINY), y, folds=2, step=5)] == [72, 77]
    with pytest.raises(ValueError, match="too short for 30 folds"):
        backtest(Forecaster(**TINY), y, folds=30)
    with pytest.raises(TypeError, match="must be a Forecaster"):
        backtest("lstm", y)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(cell="transformer"), ValueError, "cell must be one of"),
        (dict(cell=1), TypeError, "cell must be one of"),
        (dict(loss="hinge"), ValueError, "loss must be one of"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
        (dict(transform="sqrt"), ValueError, "transform must be one of"),
        (dict(lookback=0), ValueError, "lookback must be an int >= 1"),
        (dict(horizon=2.5), TypeError, "horizon must be an int"),
        (dict(lr=-1.0), ValueError, "lr must be a positive"),
        (dict(ensemble=0), ValueError, "ensemble"),
        (dict(validation=-1), ValueError, "validation"),
        (dict(dtype=np.int64), TypeError, "dtype"),
        (dict(backend="tpu"), ValueError, "tpu"),
        (dict(seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*63\) or None, got -1"),
        (dict(seed=2**63), ValueError, "seed must be an integer in"),
        (dict(seed=1.5), TypeError, "seed must be an integer .* got 1.5 of type float"),
        (dict(seed=True), TypeError, "seed must be an integer"),
        (dict(seed="0"), TypeError, "seed must be an integer"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Forecaster(**kwargs)


@pytest.mark.parametrize(
    "y, exog, exc, match",
    [
        (series(10), None, ValueError, r"at least lookback \+ horizon \+ validation = 6 \+ 3 \+ 3 = 12 values, got 10"),
        (np.r_[series(20), np.nan], None, ValueError, "y contains NaN or inf"),
        (np.r_[series(20), np.inf], None, ValueError, "y contains NaN or inf"),
        (np.ones((20, 2, 2)), None, ValueError, "y must be 1-D"),
        (np.ones(0), None, ValueError, "y must not be empty"),
        (np.ones((20, 0)), None, ValueError, "y must not be empty"),
        (["a"] * 20, None, TypeError, "y must hold real numbers"),
        (series(20), np.ones((19, 1)), ValueError, "exog must have 20 rows"),
        (series(20), np.full((20, 1), np.nan), ValueError, "exog contains NaN"),
        (series(20), np.ones((20, 1, 1)), ValueError, "exog must be 1-D"),
    ],
)
def test_bad_fit_input_leaves_forecaster_unchanged(y, exog, exc, match, fitted):
    before = fitted.predict(series())
    with pytest.raises(exc, match=match):
        fitted.fit(y, exog=exog, progress=False)
    np.testing.assert_array_equal(fitted.predict(series()), before)


def test_bad_predict_input(fitted):
    with pytest.raises(RuntimeError, match="call fit"):
        Forecaster(**TINY).predict(series())
    with pytest.raises(RuntimeError, match="call fit"):
        Forecaster(**TINY).save("x.npz")
    with pytest.raises(ValueError, match="at least lookback = 6 values, got 5"):
        fitted.predict(series()[:5])
    with pytest.raises(ValueError, match="1 column"):
        fitted.predict(series(k=2))
    with pytest.raises(ValueError, match="strictly positive"):
        fitted.predict(-series())
    with pytest.raises(ValueError, match="fitted without covariates"):
        fitted.predict(series(), exog=np.ones((60, 1)), exog_future=np.ones((3, 1)))
    with pytest.raises(ValueError, match="transform='log' needs"):
        Forecaster(transform="log", **TINY).fit(series() - 20, progress=False)


def test_repr_shows_changed_parameters():
    assert repr(Forecaster()) == "Forecaster()"
    assert repr(Forecaster(cell="gru", hidden_size=8)) == "Forecaster(cell='gru', hidden_size=8)"


# ------------------------------------------------------------------ the quality bar (defaults)


@pytest.mark.parametrize("name, load, holdout", [("airline", load_airline, 12), ("sunspots", load_sunspots, 11)])
def test_default_forecaster_beats_seasonal_naive(name, load, holdout):
    y = load()
    train, test = y[:-holdout], y[-holdout:]
    forecast = Forecaster(horizon=holdout).fit(train, progress=False).predict(train)
    naive = metrics.seasonal_naive(train, holdout, m=holdout)
    ours = metrics.mase(test, forecast, train, m=holdout)
    theirs = metrics.mase(test, naive, train, m=holdout)
    assert ours < 0.8 * theirs, (name, ours, theirs)


def test_seed_none_is_recorded_and_two_layers(tmp_path):
    y = series()
    f = Forecaster(seed=None, num_layers=2, **TINY).fit(y, progress=False)
    assert isinstance(f.seed_, int)
    again = Forecaster(seed=f.seed_, num_layers=2, **TINY).fit(y, progress=False)
    np.testing.assert_array_equal(again.predict(y), f.predict(y))
    f.save(tmp_path / "f.npz")
    assert Forecaster.load(tmp_path / "f.npz").seed_ == f.seed_


# ------------------------------------------------------------------ scale, divergence, seeds


def _fc():
    # looked up at call time, so that each test below fails on its own against an older forecast.py
    from numrnn import forecast

    return forecast


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_scales_scale_the_forecast(sign):
    """y * 1e200 and y * 1e-200 give the forecasts of y times the same factor (no overflow to inf,
    no underflow to a scale of 1 that forecast values near 0.05); -y is not logged, +y is (auto)."""
    y = sign * series()
    for transform in ("none", "auto"):
        base = Forecaster(transform=transform, **TINY).fit(y, progress=False).predict(y)
        assert np.all(np.isfinite(base))
        for factor in (1e200, 1e-200):
            f = Forecaster(transform=transform, **TINY).fit(y * factor, progress=False)
            np.testing.assert_allclose(f.predict(y * factor), base * factor, rtol=1e-4, err_msg=f"{transform} {factor}")


@pytest.mark.parametrize("value", [3e-200, -3e-200, 3e200, -3e200])
def test_constant_extreme_series_keeps_its_scale(value):
    y = np.full(30, value)
    forecast = Forecaster(transform="none", **TINY).fit(y, progress=False).predict(y)
    assert np.all(np.isfinite(forecast))
    assert np.all(np.abs(forecast / value - 1) < 0.5), forecast


def test_extreme_exog_scale_does_not_change_the_forecast():
    rng = np.random.default_rng(1)
    y, exog = series(), rng.normal(size=(63, 1))
    kw = dict(TINY, validation=0)
    a = Forecaster(**kw).fit(y, exog=exog[:60], progress=False).predict(y, exog=exog[:60], exog_future=exog[60:])
    big = exog * 1e200
    b = Forecaster(**kw).fit(y, exog=big[:60], progress=False).predict(y, exog=big[:60], exog_future=big[60:])
    np.testing.assert_allclose(b, a, rtol=1e-5)


@pytest.mark.parametrize("lr", [1e6, 1e20, 1e300])
def test_diverging_fit_raises_naming_lr_and_keeps_the_fitted_state(lr):
    """lr=1e6 without clipping used to return [inf, 0, inf] after a NumPy RuntimeWarning."""
    y = series()
    f = Forecaster(**TINY).fit(y, progress=False)
    before, history, seed = f.predict(y), f.history_, f.seed_
    weights = [net.state_dict() for net in f._fitted["members"]]
    f.lr, f.clip_norm = lr, None  # a refit with a diverging step size
    expected = rf"training diverged.*lower lr .*got {re.escape(f'lr={lr:g}')}.*clip_norm \(got None"
    with pytest.raises(RuntimeError, match=expected) as info:
        f.fit(y, progress=False)
    assert isinstance(info.value, _fc().NonFiniteForecastError) and isinstance(info.value, FloatingPointError)
    np.testing.assert_array_equal(f.predict(y), before)
    assert f.history_ is history and f.seed_ == seed
    for net, state in zip(f._fitted["members"], weights):
        for name, value in net.state_dict().items():
            np.testing.assert_array_equal(value, state[name])
    with pytest.raises(RuntimeError, match="lr=1e\\+06") as info:
        Forecaster(**TINY, lr=1e6, clip_norm=None).fit(y, progress=False)
    assert isinstance(info.value, _fc().NonFiniteForecastError)


def test_predict_raises_on_a_non_finite_forecast():
    y = series()
    f = Forecaster(**TINY).fit(y, progress=False)  # log transform: huge outputs overflow exp
    f._fitted["members"][0].head.params["bias"][...] = 1e30
    with pytest.raises(RuntimeError, match="the forecasts are not finite.*lower lr") as info:
        f.predict(y)
    assert isinstance(info.value, _fc().NonFiniteForecastError)
    g = Forecaster(transform="none", **TINY).fit(y, progress=False)
    with pytest.raises(ValueError, match=r"y \(and exog\) must stay within float32 range"):
        g.predict(y * 1e40)


def test_predict_first_and_last_values_are_finite(fitted):
    two = Forecaster(transform="none", **TINY).fit(series(k=2), progress=False)
    for f, y in ((fitted, series()), (two, series(k=2))):
        forecast = f.predict(y)
        assert np.isfinite(forecast[0]).all() and np.isfinite(forecast[-1]).all(), forecast


def test_seed_rule_and_seed_none_config_reproduces_the_weights(tmp_path):
    y = series()
    assert Forecaster(seed=np.int64(3), **TINY).seed == 3
    f = Forecaster(seed=None, **TINY).fit(y, progress=False)
    assert f.seed is None and isinstance(f.seed_, int) and 0 <= f.seed_ < 2**63
    f.save(tmp_path / "f.npz")
    g = Forecaster.load(tmp_path / "f.npz")
    assert g.seed_ == f.seed_ and g.get_params()["seed"] == f.seed_
    np.testing.assert_array_equal(g.predict(y), f.predict(y))
    again = Forecaster(**g.get_params()).fit(y, progress=False)  # the loaded config refits the same weights
    for net_f, net_a in zip(f._fitted["members"], again._fitted["members"]):
        for name, value in net_f.state_dict().items():
            np.testing.assert_array_equal(net_a.state_dict()[name], value)
    np.testing.assert_array_equal(again.predict(y), f.predict(y))
