"""Training loops: early stopping, L-BFGS convergence, truncated BPTT, gradcheck."""

from __future__ import annotations

import numpy as np
import pytest

import numrnn
from numrnn import nn, train
from numrnn.optim import SGD, Adam


def toy_regression(rng, n=64, steps=5):
    x = rng.normal(size=(steps, n, 2))
    target = (0.5 * x[:, :, :1].sum(axis=0) - 0.2 * x[-1, :, 1:]).reshape(n, 1)
    return x, target


def small_model(seed=0, cell=numrnn.GRU):
    return nn.Sequential(cell(2, 6, dtype=np.float64, seed=seed), nn.LastStep(), nn.Linear(6, 1, dtype=np.float64, seed=seed + 1))


def test_fit_reduces_loss_and_is_deterministic(rng):
    x, target = toy_regression(rng)
    runs = []
    for _ in range(2):
        model = small_model()
        hist = train.fit(model, x, target, optimizer=Adam(lr=0.02), epochs=30, batch_size=16, seed=3)
        runs.append(model.state_dict())
        assert hist["train_loss"][-1] < 0.3 * hist["train_loss"][0]
        assert hist["epochs_run"] == 30 and hist["best_epoch"] == 29
        assert not model.training  # left in eval mode
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_early_stopping_restores_best_weights(rng):
    x, target = toy_regression(rng)
    xv, tv = x[:, :8], -target[:8]  # a validation set the model cannot fit: stops early
    model = small_model()
    hist = train.fit(model, x, target, optimizer=Adam(lr=0.05), epochs=200, validation=(xv, tv), patience=3, seed=0)
    assert hist["epochs_run"] < 200
    assert hist["epochs_run"] == hist["best_epoch"] + 1 + 3
    best = min(hist["val_loss"])
    assert hist["best_val_loss"] == best
    from numrnn.losses import MSELoss

    assert MSELoss()(model(xv), tv)[0] == pytest.approx(best, rel=1e-12)


def test_fit_progress_bar(rng, capsys):
    x, target = toy_regression(rng, n=8)
    train.fit(small_model(), x, target, epochs=2, validation=(x, target), progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "2/2" not in err.split("0/2")[0]
    train.fit(small_model(), x, target, epochs=2, progress=False)
    assert capsys.readouterr().err == ""


def test_fit_bad_arguments(rng):
    x, target = toy_regression(rng, n=8)
    model = small_model()
    before = model.state_dict()
    cases = [
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=1.5), TypeError, "batch_size"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(validation=(x,)), TypeError, "validation"),
        (dict(patience=0), ValueError, "patience"),
    ]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            train.fit(model, x, target, **kwargs)
    with pytest.raises(ValueError, match="target must have 8 samples"):
        train.fit(model, x, target[:5])
    with pytest.raises(TypeError, match="module interface"):
        train.fit(object(), x, target)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_lbfgs_converges_on_least_squares(rng):
    x = rng.normal(size=(50, 3))
    w_true, b_true = np.array([[1.5, -2.0, 0.5]]), np.array([0.3])
    target = x @ w_true.T + b_true
    lin = nn.Linear(3, 1, dtype=np.float64, seed=0)
    result = train.fit_lbfgs(lin, x, target, maxiter=200)
    assert result.fun < 1e-12
    np.testing.assert_allclose(lin.params["weight"], w_true, atol=1e-6)
    np.testing.assert_allclose(lin.params["bias"], b_true, atol=1e-6)


def test_lbfgs_on_a_recurrent_stack_with_validation(rng):
    x, target = toy_regression(rng)
    model = small_model()
    seen = []
    result = train.fit_lbfgs(model, x, target, maxiter=40, validation=(x[:, :16], target[:16]), patience=5,
                             callback=lambda it, value: seen.append(value))
    assert seen and seen[-1] < seen[0]
    assert result.best_val_loss <= min(seen) * 10
    from numrnn.losses import MSELoss

    assert MSELoss()(model(x[:, :16]), target[:16])[0] == pytest.approx(result.best_val_loss, rel=1e-12)


def test_flatten_round_trip(rng):
    params = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=4).astype(np.float32)}
    vec = train.flatten(params)
    assert vec.shape == (10,) and vec.dtype == np.float64
    target = {k: np.zeros_like(v) for k, v in params.items()}
    train.unflatten_into(target, vec)
    for k in params:
        np.testing.assert_array_equal(target[k], params[k])
    with pytest.raises(ValueError, match="vector must have shape"):
        train.unflatten_into(target, vec[:3])


def test_tbptt_one_chunk_equals_full_bptt(rng):
    x = rng.normal(size=(12, 3, 2))
    target = rng.normal(size=(12, 3, 1))
    make = lambda: nn.Sequential(numrnn.LSTM(2, 4, dtype=np.float64, seed=0), nn.Linear(4, 1, dtype=np.float64, seed=1))
    full, chunked = make(), make()
    from numrnn.losses import MSELoss

    full.zero_grad()
    value, grad = MSELoss()(full(x), target)
    full.backward(grad)
    SGD(lr=0.1).step(full.params, full.grads)
    mean, states = train.tbptt(chunked, x, target, k=12, optimizer=SGD(lr=0.1))
    assert mean == pytest.approx(value, rel=1e-12)
    for k in full.params:
        np.testing.assert_allclose(chunked.params[k], full.params[k], rtol=1e-12)
    assert states[0][0].shape == (1, 3, 4)


def test_tbptt_carries_state_but_not_gradient(rng):
    """Chunks of k: the forward pass equals the full pass; each chunk's gradient is its own."""
    x = rng.normal(size=(10, 2, 2))
    target = rng.normal(size=(10, 2, 1))
    make = lambda: nn.Sequential(numrnn.GRU(2, 3, dtype=np.float64, seed=4), nn.Linear(3, 1, dtype=np.float64, seed=5))
    model = make()
    # a negligible learning rate keeps the weights fixed: the mean chunk loss equals the full pass
    from numrnn.losses import MSELoss

    reference = make()
    full_loss = MSELoss()(reference(x), target)[0]
    mean, _ = train.tbptt(model, x, target, k=4, optimizer=SGD(lr=1e-12))
    assert mean == pytest.approx(full_loss, rel=1e-9)
    # gradient of the second chunk alone: run chunk 1 to get the state, then chunk 2 with dstate=None
    manual = make()
    manual(x[:4])
    state = manual.states
    manual.zero_grad()
    value, grad = MSELoss()(manual(x[4:8], states=state), target[4:8])
    manual.backward(grad)
    expected = {k: g.copy() for k, g in manual.grads.items()}
    probe = make()
    _, states = train.tbptt(probe, x[:4], target[:4], k=4, optimizer=SGD(lr=1e-300))
    before = probe.state_dict()
    train.tbptt(probe, x[4:8], target[4:8], k=4, optimizer=SGD(lr=1.0), states=states)
    for k in expected:
        np.testing.assert_allclose(before[k] - probe.params[k], expected[k], rtol=1e-9, atol=1e-15)


def test_tbptt_bad_arguments(rng):
    model = small_model()
    x = rng.normal(size=(4, 2, 2))
    with pytest.raises(TypeError, match="optimizer must be an Optimizer"):
        train.tbptt(model, x, np.zeros((4, 2, 1)), k=2)
    with pytest.raises(ValueError, match="k must be"):
        train.tbptt(model, x, np.zeros((4, 2, 1)), k=0, optimizer=SGD())
    with pytest.raises(TypeError, match="nn.Sequential"):
        train.tbptt(nn.Linear(2, 1), x, np.zeros((4, 2, 1)), k=2, optimizer=SGD())
    with pytest.raises(ValueError, match="target must have 4 timesteps"):
        train.tbptt(model, x, np.zeros((3, 2, 1)), k=2, optimizer=SGD())


def test_gradcheck_catches_a_wrong_gradient(rng):
    lin = nn.Linear(3, 2, dtype=np.float64, seed=0)
    x, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    good = train.make_closure(lin, "mse", x, target)
    assert max(train.gradcheck(good, lin.params).values()) < 1e-8

    def bad():
        value, grads = good()
        grads["bias"] = grads["bias"] * 1.01
        return value, grads

    with pytest.raises(train.GradcheckError, match="bias"):
        train.gradcheck(bad, lin.params)
    report = train.gradcheck(bad, lin.params, raise_exception=False)
    assert report["bias"] > 1e-6 and report["weight"] < 1e-8
    before = lin.state_dict()
    train.gradcheck(good, lin.params, max_per_param=2)
    for k in before:  # parameters restored exactly
        np.testing.assert_array_equal(lin.params[k], before[k])
    with pytest.raises(ValueError, match="keys of params"):
        train.gradcheck(lambda: (0.0, {}), lin.params)


def test_limit_threads_restores_numba_threads():
    import numba

    before = numba.get_num_threads()
    with train.limit_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with train.limit_threads(None):
        assert numba.get_num_threads() == before
