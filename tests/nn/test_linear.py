"""nn.Linear and nn.LastStep: gradients, PyTorch parity, options, bad input."""

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


# ---------------------------------------------------------------- Embedding, LayerNorm, Dropout, Flatten, activations


def test_small_gemms_run_on_one_blas_thread(monkeypatch):
    """A small layer's products run under single_threaded_blas (OpenBLAS's spinning workers held
    the cores Numba's kernels needed); a large one keeps BLAS's threads."""
    import contextlib

    import numrnn.nn.linear as linear_module

    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(linear_module, "single_threaded_blas", recording)
    small = linear_module.Linear(16, 8, seed=0)
    small(np.ones((4, 16), np.float32))
    small.backward(np.ones((4, 8), np.float32))
    assert len(entered) == 2  # forward, and backward's two products
    monkeypatch.setattr(linear_module, "BLAS_THREADS_MIN_WORK", 4 * 16 * 8)  # the same layer is now "large"
    small(np.ones((4, 16), np.float32))
    assert len(entered) == 2
