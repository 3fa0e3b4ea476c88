"""nn.Linear, nn.LastStep and nn.Sequential: gradients, PyTorch parity, state, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import numrnn
from numrnn import nn
from numrnn.train import gradcheck, make_closure


def test_linear_gradcheck_float64(rng):
    lin = nn.Linear(4, 3, dtype=np.float64, seed=0)
    lin.params["bias"][:] = rng.normal(size=3)
    x, target = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 3))
    report = gradcheck(make_closure(lin, "mse", x, target), lin.params)
    assert set(report) == {"weight", "bias"}


def test_linear_dx_and_accumulation(rng):
    lin = nn.Linear(3, 2, dtype=np.float64, seed=1)
    x, dy = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    y = lin(x)
    np.testing.assert_allclose(y, x @ lin.params["weight"].T + lin.params["bias"])
    dx = lin.backward(dy)
    np.testing.assert_allclose(dx, dy @ lin.params["weight"])
    lin.backward(dy)  # a second backward accumulates, like PyTorch's .grad
    np.testing.assert_allclose(lin.grads["weight"], 2 * dy.T @ x)
    np.testing.assert_allclose(lin.grads["bias"], 2 * dy.sum(axis=0))
    lin.zero_grad()
    assert not lin.grads["weight"].any()


def test_linear_torch_parity(rng):
    torch = pytest.importorskip("torch")
    lin = nn.Linear(5, 4, dtype=np.float64, seed=2)
    ref = torch.nn.Linear(5, 4).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    x, dy = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    tx = torch.tensor(x, requires_grad=True)
    out = ref(tx)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(lin(x), out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.backward(dy), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.grads["weight"], ref.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lin.grads["bias"], ref.bias.grad.numpy(), rtol=1e-12)


def test_linear_init_and_options():
    lin = nn.Linear(16, 8, seed=0)
    assert lin.params["weight"].dtype == np.float32
    assert np.abs(lin.params["weight"]).max() <= 0.25
    np.testing.assert_array_equal(lin.params["weight"], nn.Linear(16, 8, seed=0).params["weight"])
    nobias = nn.Linear(2, 2, bias=False)
    assert set(nobias.params) == {"weight"}
    assert nn.module_from_spec(nn.module_spec(lin)).config() == lin.config()


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: nn.Linear(0, 2), ValueError, "in_features"),
        (lambda: nn.Linear(2, 2.0), TypeError, "out_features"),
        (lambda: nn.Linear(2, 2, dtype=np.int32), TypeError, "dtype"),
        (lambda: nn.Linear(2, 2, seed="a"), TypeError, "seed"),
        (lambda: nn.Linear(2, 2)(np.ones((3, 3))), ValueError, "2 features"),
        (lambda: nn.Linear(2, 2)(np.array([[np.nan, 1.0]])), ValueError, "NaN"),
        (lambda: nn.Linear(2, 2).backward(np.ones((1, 2))), RuntimeError, "before forward"),
        (lambda: nn.Sequential(), ValueError, "at least one"),
        (lambda: nn.Sequential(nn.Linear(2, 2), "x"), TypeError, "module 1"),
        (lambda: nn.module_from_spec({"type": "Conv", "config": {}}), ValueError, "unknown module type"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_linear_bad_dy_leaves_grads_unchanged():
    lin = nn.Linear(2, 3)
    lin(np.ones((4, 2)))
    with pytest.raises(ValueError, match="dy must have shape"):
        lin.backward(np.ones((4, 2)))
    assert not lin.grads["weight"].any()


def test_last_step():
    step = nn.LastStep()
    x = np.arange(24.0).reshape(4, 3, 2)
    np.testing.assert_array_equal(step(x), x[-1])
    dx = step.backward(np.ones((3, 2)))
    assert dx.shape == x.shape and dx[-1].all() and not dx[:-1].any()
    with pytest.raises(ValueError, match="sequence"):
        step(np.ones(3))


def make_stack(cell=numrnn.GRU, seed=0):
    model = nn.Sequential(cell(3, 5, dtype=np.float64, seed=seed), nn.LastStep(), nn.Linear(5, 2, dtype=np.float64, seed=seed + 1))
    for k, v in model.params.items():  # non-zero, unequal biases
        if "bias" in k:
            v[:] = np.random.default_rng(len(k)).normal(size=v.shape)
    return model


@pytest.mark.parametrize("cell", [numrnn.LSTM, numrnn.GRU, numrnn.RNN])
def test_sequential_gradcheck(cell, rng):
    model = make_stack(cell)
    x, target = rng.normal(size=(6, 4, 3)), rng.normal(size=(4, 2))
    report = gradcheck(make_closure(model, "mse", x, target), model.params, max_per_param=6)
    assert "0.weight_hh_l0" in report and "2.weight" in report


def test_sequential_params_are_views_and_dx(rng):
    model = make_stack()
    model.params["2.weight"][0, 0] = 42.0
    assert model[2].params["weight"][0, 0] == 42.0
    x = rng.normal(size=(6, 4, 3))
    out = model(x)
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape
    assert model.grads["0.weight_ih_l0"] is model[0].grads["weight_ih_l0"]
    assert len(model) == 3 and model.states[0].shape == (1, 4, 5) and model.states[1] is None


def test_sequential_states_carry_over(rng):
    model = nn.Sequential(numrnn.LSTM(3, 4, dtype=np.float64, seed=0), nn.Linear(4, 1, dtype=np.float64, seed=1))
    x = rng.normal(size=(10, 2, 3))
    whole = model(x)
    first = model(x[:6])
    second = model(x[6:], states=model.states)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12)
    with pytest.raises(ValueError, match="states must be a list of 2"):
        model(x, states=[None])
    with pytest.raises(ValueError, match=r"states\[1\] must be None"):
        model(x, states=[None, np.zeros(1)])


def test_sequential_state_dict_round_trip_all_or_nothing(rng):
    a, b = make_stack(seed=0), make_stack(seed=5)
    x = rng.normal(size=(6, 2, 3))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x), b(x))
    before = b.state_dict()
    bad = a.state_dict()
    bad["2.weight"] = np.ones((3, 3))
    with pytest.raises(ValueError, match="2.weight"):
        b.load_state_dict(bad)
    bad = a.state_dict()
    del bad["2.bias"]
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict(bad)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    rebuilt = nn.module_from_spec(nn.module_spec(a))
    rebuilt.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(rebuilt(x), a(x))
    assert "Sequential(" in repr(rebuilt)


def test_train_eval_propagate():
    model = make_stack()
    model.eval()
    assert not model[0].training and not model[2].training
    model.train()
    assert model[0].training
