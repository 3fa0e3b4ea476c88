"""Forecaster: shapes, determinism, save/load, uncertainty, backtests, bad input, quality bar."""

from __future__ import annotations

import json
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
    assert g._fitted["scaler"].log.tolist() == [True]


def test_auto_transform_logs_only_positive_columns():
    y = series(k=2)
    y[:, 1] -= 25  # crosses zero
    f = Forecaster(**TINY).fit(y, progress=False)
    assert f._fitted["scaler"].log.tolist() == [True, False]


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
    with pytest.raises(ValueError, match="array 'scaler/scale' is missing"):
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
        (dict(lr=10**400), ValueError, "lr must be a positive finite float"),
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


# ------------------------------------------------------------------ crafted files


@pytest.fixture(scope="module")
def saved_with_exog(tmp_path_factory):
    """A tiny fitted two-member forecaster with one covariate (adam), its file, y and exog."""
    rng = np.random.default_rng(2)
    y, exog = series(), rng.normal(size=(63, 1))
    f = Forecaster(**dict(TINY, epochs=2, ensemble=2)).fit(y, exog=exog[:60], progress=False)
    path = tmp_path_factory.mktemp("crafted") / "f.npz"
    f.save(path)
    return f, path, y, exog


def _write_raw(path, config, arrays):
    """Write a numrnn file with np.savez (digests recomputed), also for a config JSON allows but
    numrnn.io.save_npz refuses (NaN, Infinity)."""
    from numrnn import io as nio

    meta = {"format": "numrnn", "version": 1, "kind": "forecaster", "config": config,
            "digests": {name: nio._digest(arr) for name, arr in arrays.items()}}
    with open(path, "wb") as fh:
        np.savez(fh, __numrnn__=np.array(json.dumps(meta)), **arrays)


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def _params(**changes):
    return lambda c, a: c["params"].update(changes)


def _set(key, value):
    return lambda c, a: c.update({key: value})


def _array(name, value):
    return lambda c, a: a.update({name: value})


def _drop(name):
    return lambda c, a: a.pop(name)


CRAFTED_FORECASTERS = {
    # sizes the arrays do not have: refused before a network of that size is built
    "huge hidden_size": (_params(hidden_size=10**7), r"member0/rnn.weight_ih_l0.*implies float32\(40000000, 2\)"),
    "huge num_layers": (_params(num_layers=10**12), "array 'member0/rnn.weight_ih_l1' is missing"),
    "huge ensemble": (_params(ensemble=10**9), r"config\['optimizers'\] must be a list of ensemble = 1000000000 entries, got 2"),
    "huge horizon": (_params(horizon=10**12), r"member0/head.weight.*implies float32\(1000000000000, 1000000000004\)"),
    "huge n_targets": (_set("n_targets", 10**9), r"config\['one_d'\] is true but config\['n_targets'\] is 1000000000"),
    "huge n_targets, not one_d": (
        lambda c, a: c.update(n_targets=10**9, one_d=False),
        r"array 'scaler/log' is uint8\(1,\), its config implies uint8\(1000000000,\)",
    ),
    "huge n_exog": (_set("n_exog", 10**9), r"scaler/exog_mean.*implies float64\(1000000000,\)"),
    "fewer members": (_params(ensemble=1), "must be a list of ensemble = 1 entries, got 2"),
    "other cell": (_params(cell="gru"), "member0/rnn.weight_ih_l0.*implies float32"),
    "other dtype": (_params(dtype="float64"), "implies float64"),
    # config structure and value types
    "empty config": (lambda c, a: c.clear(), r"the config lacks \['params', 'n_targets'"),
    "params a list": (_set("params", [1, 2]), r"config\['params'\] must be a dict, got list"),
    "unknown parameter": (_params(units=3), r"unexpected \['units'\]"),
    "missing parameter": (lambda c, a: c["params"].pop("hidden_size"), r"missing \['hidden_size'\]"),
    "missing key": (lambda c, a: c.pop("history"), r"the config lacks \['history'\]"),
    "hidden_size a str": (_params(hidden_size="4"), "hidden_size must be an int"),
    "hidden_size a float": (_params(hidden_size=4.0), "hidden_size must be an int"),
    "lookback a bool": (_params(lookback=True), "lookback must be an int"),
    "cell an int": (_params(cell=5), "cell must be one of"),
    "lr a str": (_params(lr="fast"), "lr must be a positive float"),
    "lr NaN": (_params(lr=math.nan), "lr must be a positive finite float"),
    "clip_norm Infinity": (_params(clip_norm=math.inf), "clip_norm must be a positive finite float"),
    "lr beyond float range": (_params(lr=10**400), "lr must be a positive finite float"),
    "dtype int8": (_params(dtype="int8"), r"dtype'\] must be 'float32' or 'float64', got"),
    "dtype a dict": (_params(dtype={"names": ["a"], "formats": ["f8"]}), r"dtype'\] must be 'float32' or 'float64', got"),
    "deeply nested value": (_params(hidden_size=_nested(60)), "hidden_size must be an int"),
    "n_targets a str": (_set("n_targets", "1"), "n_targets.*must be an integer >= 1"),
    "n_targets zero": (_set("n_targets", 0), "n_targets.*must be an integer >= 1"),
    "n_exog negative": (_set("n_exog", -1), "n_exog.*must be an int >= 0"),
    "n_exog None": (_set("n_exog", None), "n_exog.*must be an int >= 0"),
    "one_d a str": (_set("one_d", "yes"), "one_d.*must be a bool"),
    "seed_used None": (_set("seed_used", None), r"seed_used'\] must be an integer"),
    "seed_used negative": (_set("seed_used", -1), r"seed_used'\] must be an integer in \[0, 2\*\*63\)"),
    "seed mismatch": (_params(seed=123), "must be the seed used, 0, got 123"),
    "optimizers a dict": (_set("optimizers", {}), r"config\['optimizers'\] must be a list.*got dict"),
    "optimizer missing": (lambda c, a: c["optimizers"].__setitem__(1, None), r"optimizers'\]\[1\] must be the state of an Adam optimiser"),
    "optimizer of another type": (lambda c, a: c["optimizers"][0].update(type="SGD"), "got type 'SGD'"),
    "lbfgs with optimiser state": (_params(optimizer="lbfgs"), "must be null for optimizer='lbfgs'"),
    "optimizer steps negative": (lambda c, a: c["optimizers"][0].update(steps=-1), "steps must be an int >= 0"),
    "optimizer state for no parameter": (
        lambda c, a: c["optimizers"][0]["slots"].update({"rnn.nothing": ["exp_avg"]}), "which the model does not have"
    ),
    "optimizer lr a str": (lambda c, a: c["optimizers"][0]["config"].update(lr="x"), "lr must be a real number"),
    "optimizer lr beyond float range": (lambda c, a: c["optimizers"][0]["config"].update(lr=10**400), "lr must be a finite number"),
    "history an int": (_set("history", 3), r"config\['history'\] must be a list"),
    "history entry a list": (lambda c, a: c["history"].__setitem__(0, [1]), r"history'\]\[0\] must be a dict"),
    "history key missing": (lambda c, a: c["history"][1].pop("epochs_run"), r"history'\]\[1\] lacks \['epochs_run'\]"),
    "history losses not numbers": (lambda c, a: c["history"][0].update(train_loss=["a"]), "list of finite numbers"),
    "history loss NaN": (lambda c, a: c["history"][0].update(val_loss=[math.nan]), "list of finite numbers"),
    "history loss beyond float range": (lambda c, a: c["history"][0].update(train_loss=[10**400]), "list of finite numbers"),
    "history epochs negative": (lambda c, a: c["history"][0].update(epochs_run=-5), "epochs_run'\\] must be an int >= 0"),
    "history best loss a str": (lambda c, a: c["history"][0].update(best_val_loss="x"), "finite number or null"),
    # arrays
    "member array missing": (_drop("member1/rnn.weight_hh_l0"), "array 'member1/rnn.weight_hh_l0' is missing"),
    "member array wrong shape": (_array("member0/head.weight", np.zeros((2, 2), np.float32)), r"head.weight' is float32\(2, 2\)"),
    "member array wrong dtype": (lambda c, a: a.update({"member0/head.bias": a["member0/head.bias"].astype(np.float64)}), "head.bias' is float64"),
    "member weights NaN": (lambda c, a: a["member0/head.bias"].__setitem__(0, np.nan), r"arrays \['member0/head.bias'\] are not finite"),
    "extra member": (lambda c, a: a.update({"member2/head.weight": a["member0/head.weight"]}), r"unexpected arrays \['member2/head.weight'\]"),
    "extra array": (_array("junk", np.zeros(1)), r"unexpected arrays \['junk'\]"),
    "optimizer state missing": (lambda c, a: a.pop("optim1/exp_avg/head.weight"), "array 'optim1/exp_avg/head.weight' is missing"),
    "optimizer state wrong shape": (_array("optim0/exp_avg_sq/head.bias", np.zeros(7, np.float32)), r"exp_avg_sq/head.bias' is float32\(7,\)"),
    "scaler missing": (_drop("scaler/exog_std"), "array 'scaler/exog_std' is missing"),
    "scaler wrong shape": (_array("scaler/scale", np.ones(2)), r"scaler/scale' is float64\(2,\), its config implies float64\(1,\)"),
    "scaler 2-D": (_array("scaler/exog_mean", np.zeros((1, 1))), r"scaler/exog_mean' is float64\(1, 1\)"),
    "scaler wrong dtype": (_array("scaler/scale", np.ones(1, np.float32)), r"scaler/scale' is float32\(1,\)"),
    "scaler NaN": (_array("scaler/scale", np.array([np.nan])), "'scaler/scale' is not finite"),
    "scaler inf": (_array("scaler/exog_mean", np.array([np.inf])), "'scaler/exog_mean' is not finite"),
    "scale zero": (_array("scaler/scale", np.zeros(1)), "'scaler/scale' must be positive"),
    "exog_std negative": (_array("scaler/exog_std", -np.ones(1)), "'scaler/exog_std' must be positive"),
    "log flag 2": (_array("scaler/log", np.array([2], np.uint8)), "must hold 0 and 1"),
    "log flag float": (_array("scaler/log", np.ones(1)), r"scaler/log' is float64\(1,\)"),
    "log against transform": (_params(transform="none"), "does not fit transform='none'"),
}


@pytest.mark.parametrize("edit, message", list(CRAFTED_FORECASTERS.values()), ids=list(CRAFTED_FORECASTERS))
def test_crafted_file_is_refused_before_building(tmp_path, monkeypatch, saved_with_exog, edit, message):
    """Every part of a saved forecaster is checked before a network is built: a crafted size,
    type, structure or array gives the corrupt-file ValueError naming the path, no other
    exception, no large allocation and no network."""
    import tracemalloc

    from numrnn import io as nio
    from numrnn.forecast import network

    config, arrays = nio.load_npz(saved_with_exog[1], kind="forecaster")
    arrays = {name: arr.copy() for name, arr in arrays.items()}
    edit(config, arrays)
    path = tmp_path / "crafted.npz"
    _write_raw(path, config, arrays)

    def build(*args, **kwargs):
        raise AssertionError("a network was built before the file was checked")

    monkeypatch.setattr(network, "WindowNet", build)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"cannot load {re.escape(repr(str(path)))}: .*{message}"):
            Forecaster.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # the file is a few kB; nothing sized by the config is allocated


def test_crafted_file_baseline_loads_bit_exact(tmp_path, saved_with_exog):
    """The unedited file, rewritten by the same raw writer the crafted cases use, loads and
    forecasts as the original (so each crafted case fails for its edit alone)."""
    from numrnn import io as nio

    f, saved, y, exog = saved_with_exog
    config, arrays = nio.load_npz(saved, kind="forecaster")
    path = tmp_path / "same.npz"
    _write_raw(path, config, arrays)
    g = Forecaster.load(path)
    kwargs = dict(exog=exog[:60], exog_future=exog[60:])
    np.testing.assert_array_equal(g.predict(y, **kwargs), f.predict(y, **kwargs))
    assert g.get_params() == f.get_params() and g.history_ == f.history_


def test_crafted_deep_or_non_dict_config_is_refused(tmp_path, saved_with_exog):
    """A config that is not a dict, or nested beyond numrnn.io's bound, is the corrupt-file error."""
    from numrnn import io as nio

    _, arrays = nio.load_npz(saved_with_exog[1], kind="forecaster")
    for name, config, message in [
        ("list", [1, 2, 3], "the config must be a dict, got list"),
        ("null", None, "the config must be a dict, got NoneType"),
        ("deep", {"params": _nested(100)}, "nested deeper than 64 levels"),
    ]:
        path = tmp_path / f"{name}.npz"
        _write_raw(path, config, arrays)
        with pytest.raises(ValueError, match=f"cannot load {re.escape(repr(str(path)))}: .*{message}"):
            Forecaster.load(path)


def test_crafted_huge_lookback_allocates_nothing(tmp_path, saved_with_exog):
    """No array's shape depends on lookback, so a crafted lookback cannot be checked against the
    file; it loads small networks and predict then refuses any real y with a ValueError."""
    from numrnn import io as nio

    _, saved, y, exog = saved_with_exog
    config, arrays = nio.load_npz(saved, kind="forecaster")
    config["params"]["lookback"] = 10**12
    path = tmp_path / "lookback.npz"
    _write_raw(path, config, arrays)
    g = Forecaster.load(path)
    with pytest.raises(ValueError, match="at least lookback = 1000000000000 values, got 60"):
        g.predict(y, exog=exog[:60], exog_future=exog[60:])
