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
    lin(x)
    lin.backward(dy)  # a second forward and backward accumulate, like PyTorch's .grad
    np.testing.assert_allclose(lin.grads["weight"], 2 * dy.T @ x)
    np.testing.assert_allclose(lin.grads["bias"], 2 * dy.sum(axis=0))
    lin.zero_grad()
    assert not lin.grads["weight"].any()


@pytest.mark.torch
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
        (lambda: nn.Linear(2, 2, seed=1.0), TypeError, "seed"),
        (lambda: nn.Linear(2, 2, seed=True), TypeError, "seed"),
        (lambda: nn.Linear(2, 2, seed=-1), ValueError, "seed"),
        (lambda: nn.LastStep(batch_first=1), TypeError, "batch_first"),
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


def test_last_step_batch_first(rng):
    step = nn.LastStep(batch_first=True)
    x = rng.normal(size=(3, 4, 2))  # (B, T, F)
    np.testing.assert_array_equal(step(x), x[:, -1])
    dy = rng.normal(size=(3, 2))
    dx = step.backward(dy)
    assert dx.shape == x.shape and not dx[:, :-1].any()
    np.testing.assert_array_equal(dx[:, -1], dy)
    np.testing.assert_array_equal(step(x[0]), x[0, -1])  # 2-D: one unbatched (T, F) sequence
    assert nn.module_from_spec(nn.module_spec(step)).batch_first
    gru = numrnn.GRU(2, 5, batch_first=True, dtype=np.float64, seed=0)
    model = nn.Sequential(gru, nn.LastStep(batch_first=True))
    np.testing.assert_array_equal(model(x), model.states[0][-1])  # the last step is h_n
    with pytest.raises(ValueError, match=r"module 1 \(LastStep\) must have batch_first=True like module 0 \(GRU\)"):
        nn.Sequential(gru, nn.LastStep())


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


class Picky(nn.Module):
    """Passes its input on, or raises ``reject`` (an exception) as a later module of a stack may."""

    reject = None

    def forward(self, x):
        if self.reject is not None:
            raise self.reject
        return x

    def backward(self, dy):
        return dy

    def config(self):
        return {}


@pytest.mark.torch
def test_batch_first_stack_torch_parity(rng):
    torch = pytest.importorskip("torch")
    model = nn.Sequential(numrnn.GRU(3, 5, batch_first=True, dtype=np.float64, seed=0), nn.LastStep(batch_first=True),
                          nn.Linear(5, 2, dtype=np.float64, seed=1))
    gru, head = torch.nn.GRU(3, 5, batch_first=True).double(), torch.nn.Linear(5, 2).double()
    gru.load_state_dict({k: torch.tensor(v) for k, v in model[0].state_dict().items()})
    head.load_state_dict({k: torch.tensor(v) for k, v in model[2].state_dict().items()})
    x, dy = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 2))
    tx = torch.tensor(x, requires_grad=True)
    out = head(gru(tx)[0][:, -1])
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(model(x), out.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.backward(dy), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.grads["2.weight"], head.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.grads["0.weight_hh_l0"], gru.weight_hh_l0.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_sequential_failed_forward_leaves_every_module_as_it_was(rng):
    def make():  # dropout between the GRU's layers: the failed call must not move its masks on
        return nn.Sequential(numrnn.GRU(3, 5, num_layers=2, dropout=0.5, dtype=np.float64, seed=0), nn.LastStep(),
                             nn.Linear(5, 2, dtype=np.float64, seed=1), Picky())
    x1, x2, x3 = (rng.normal(size=(6, 4, 3)) for _ in range(3))
    dy = rng.normal(size=(4, 2))
    want = make()
    want(x1)
    want_dx = want.backward(dy)
    want_next = want(x3)
    model = make()
    model(x1)
    states = model.states
    model[3].reject = ValueError("x rejected")
    with pytest.raises(ValueError, match=r"Sequential module 3 \(Picky\): x rejected"):
        model(x2)  # same shapes: the GRU reuses its buffers, the Linear saves x2
    model[3].reject = None
    assert model.states is states
    np.testing.assert_array_equal(model.backward(dy), want_dx)  # the backward of the x1 call
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)
    np.testing.assert_array_equal(model(x3), want_next)


def test_sequential_failed_forward_after_a_pending_one_keeps_its_buffers(rng):
    # no backward between the calls: the GRU's next forward would overwrite what the first saved
    model = nn.Sequential(numrnn.GRU(3, 5, dtype=np.float64, seed=0), Picky())
    want = nn.Sequential(numrnn.GRU(3, 5, dtype=np.float64, seed=0), Picky())
    x1, x2 = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 3))
    dy = rng.normal(size=(6, 4, 5))
    for _ in range(3):  # fail, succeed, fail: each call runs on the buffers the pending backward does not read
        model(x1)
        model[1].reject = ValueError("x rejected")
        with pytest.raises(ValueError, match="x rejected"):
            model(x2)
        model[1].reject = None
    want(x1)
    np.testing.assert_array_equal(model.backward(dy), want.backward(dy))
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)


def test_sequential_errors_name_the_module():
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(5, 2, seed=1))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Linear\): x must have 5 features") as info:
        model(np.ones((2, 3)))
    assert isinstance(info.value.__cause__, ValueError)
    model = nn.Sequential(nn.Linear(3, 2, seed=0), nn.Sequential(nn.LastStep(), nn.Linear(2, 2, seed=1)))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Sequential\): Sequential module 0 \(LastStep\)"):
        model(np.ones(3))  # the 1-D output of module 0 is no sequence
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1))
    model(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(Linear\): dy must have shape"):
        model.backward(np.ones((2, 3)))

    class TwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    picky = Picky()
    picky.reject = TwoArgs(1, 2)
    with pytest.raises(TwoArgs) as info:  # a type that takes other arguments: raised as it was
        nn.Sequential(nn.Linear(3, 4, seed=0), picky)(np.ones((2, 3)))
    assert info.value is picky.reject


def test_second_backward_says_one_backward_per_forward(rng):
    x = rng.normal(size=(6, 2, 3))
    for module, inp in [(nn.Linear(3, 2, seed=0), x), (nn.LastStep(), x), (make_stack(), x)]:
        out = module(inp)
        module.backward(np.ones_like(out))
        grads = {k: g.copy() for k, g in module.grads.items()}
        with pytest.raises(RuntimeError, match="already ran for the last forward.*each forward supports one backward"):
            module.backward(np.ones_like(out))
        for k, g in grads.items():  # the refused call changed nothing
            np.testing.assert_array_equal(module.grads[k], g, err_msg=k)
    with pytest.raises(RuntimeError, match="Sequential.backward.. called before forward"):
        make_stack().backward(np.ones((2, 2)))


def test_linear_keeps_its_own_copy_of_x(rng):
    lin = nn.Linear(3, 2, dtype=np.float64, seed=0)
    x, dy = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    want = dy.T @ x
    lin(x)
    x[...] = 0.0  # the caller reuses its buffer before backward
    lin.backward(dy)
    np.testing.assert_allclose(lin.grads["weight"], want, rtol=1e-13)


def test_linear_float32_bias_gradient_is_accurate(rng):
    lin = nn.Linear(2, 8, seed=0)
    dy = rng.random((100_000, 8)).astype(np.float32)  # all positive: a running float32 sum drifts
    lin(np.zeros((100_000, 2)))
    lin.backward(dy)
    exact = dy.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(lin.grads["bias"], exact, rtol=2e-7)  # float32 rounding of the exact sum


@pytest.mark.parametrize("shape", [(35, 20, 65), (7, 2, 4, 65)])
def test_linear_nd_input_is_one_2d_product(shape, rng):
    lin = nn.Linear(65, 33, seed=0)
    x, dy = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape[:-1] + (33,)).astype(np.float32)
    flat = nn.Linear(65, 33, seed=0)
    want_y, got_y = flat(x.reshape(-1, 65)), lin(x)
    assert got_y.shape == shape[:-1] + (33,)
    np.testing.assert_array_equal(got_y.reshape(-1, 33), want_y)  # the same GEMM, bit for bit
    want_dx, got_dx = flat.backward(dy.reshape(-1, 33)), lin.backward(dy)
    np.testing.assert_array_equal(got_dx.reshape(-1, 65), want_dx)
    np.testing.assert_array_equal(lin.grads["weight"], flat.grads["weight"])


def test_linear_seed_is_drawn_and_recorded():
    lin = nn.Linear(4, 3)
    assert isinstance(lin.seed, int) and lin.config()["seed"] == lin.seed
    rebuilt = nn.module_from_spec(nn.module_spec(lin))
    np.testing.assert_array_equal(rebuilt.params["weight"], lin.params["weight"])
    lin.reset_parameters()
    np.testing.assert_array_equal(nn.Linear(4, 3, seed=lin.seed).params["weight"], lin.params["weight"])
    assert nn.Linear(4, 3, seed=np.int64(7)).seed == 7
