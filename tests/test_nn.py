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


# ---------------------------------------------------------------- Embedding, LayerNorm, Dropout, Flatten, activations


def numeric_input_grad(f, x, eps=1e-6):
    """Central differences of the scalar ``f(x)`` with respect to every entry of ``x`` (float64)."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        original = flat[j]
        flat[j] = original + eps
        plus = f(x)
        flat[j] = original - eps
        minus = f(x)
        flat[j] = original
        out[j] = (plus - minus) / (2 * eps)
    return grad


def check_input_grad(module, x, rng, rtol=1e-6, atol=1e-8):
    """``module.backward(w)`` against central differences of ``sum(module(x) * w)``."""
    w = rng.normal(size=np.shape(module(x)))
    numerical = numeric_input_grad(lambda z: float(np.sum(module(z) * w)), x.copy())
    module(x)
    np.testing.assert_allclose(module.backward(w), numerical, rtol=rtol, atol=atol)


def unequal(rng, module, scale=1.0):
    """Give every parameter non-zero, unequal values (weights near 1 for LayerNorm)."""
    for k, v in module.params.items():
        v[...] = (1.0 if k == "weight" and isinstance(module, nn.LayerNorm) else 0.0) + scale * rng.normal(size=v.shape)
    return module


def test_embedding_forward_and_repeated_indices_accumulate(rng):
    emb = nn.Embedding(7, 3, dtype=np.float64, seed=0)
    idx = np.array([[1, 4, 1], [6, 1, 0]])
    y = emb(idx)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y, emb.params["weight"][idx])
    dy = rng.normal(size=y.shape)
    assert emb.backward(dy) is None  # indices carry no gradient
    want = np.zeros((7, 3))
    for k, row in enumerate(idx.reshape(-1)):
        want[row] += dy.reshape(-1, 3)[k]
    np.testing.assert_allclose(emb.grads["weight"], want, rtol=1e-15)
    np.testing.assert_allclose(emb.grads["weight"][1], dy[0, 0] + dy[0, 2] + dy[1, 1], rtol=1e-15)
    assert not emb.grads["weight"][[2, 3, 5]].any()
    emb(idx)
    emb.backward(dy)  # a second forward and backward accumulate
    np.testing.assert_allclose(emb.grads["weight"], 2 * want, rtol=1e-15)
    assert emb(np.int64(3)).shape == (3,) and emb(np.zeros((0, 2), dtype=np.int32)).shape == (0, 2, 3)
    assert emb([[2, 3]]).shape == (1, 2, 3)


def test_embedding_padding_idx():
    emb = nn.Embedding(5, 4, padding_idx=2, seed=0)
    assert not emb.params["weight"][2].any() and emb.params["weight"][[0, 1, 3, 4]].all()
    idx = np.array([2, 0, 2, 4])
    out = emb(idx)
    assert not out[[0, 2]].any()
    emb.backward(np.ones_like(out))
    assert not emb.grads["weight"][2].any()
    np.testing.assert_array_equal(emb.grads["weight"][[0, 4]], np.ones((2, 4)))
    assert nn.Embedding(5, 4, padding_idx=-1, seed=0).padding_idx == 4  # negative counts from the end, as torch
    assert not nn.Embedding(5, 4, padding_idx=-5, seed=0).params["weight"][0].any()


def test_embedding_init_is_standard_normal_and_seeded():
    emb = nn.Embedding(400, 50, seed=3)
    w = emb.params["weight"]
    assert w.dtype == np.float32 and abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02
    np.testing.assert_array_equal(w, nn.Embedding(400, 50, seed=3).params["weight"])
    assert isinstance(nn.Embedding(2, 2).seed, int)
    rebuilt = nn.module_from_spec(nn.module_spec(emb))
    np.testing.assert_array_equal(rebuilt.params["weight"], w)
    assert rebuilt.config() == emb.config()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_gradient_is_a_float64_sum_in_input_order(dtype, rng):
    import numba

    emb = nn.Embedding(6, 5, padding_idx=3, dtype=dtype, seed=0)
    idx = rng.integers(0, 6, size=(40, 50))
    dy = rng.random((40, 50, 5)).astype(dtype)  # all positive: a running float32 sum would drift
    want = np.zeros((6, 5))
    for row, grad in zip(idx.reshape(-1), dy.reshape(-1, 5).astype(np.float64)):
        want[row] += grad  # float64, in input order, as the kernel sums
    want[3] = 0
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):  # serial kernel: the same bits for any count
        numba.set_num_threads(threads)
        try:
            emb.zero_grad()
            emb(idx)
            emb.backward(dy)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append(emb.grads["weight"].copy())
        np.testing.assert_array_equal(results[-1], want.astype(dtype))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_embedding_gradcheck_float64(rng):
    emb = nn.Embedding(5, 3, dtype=np.float64, seed=0)  # the padding row has, by design, no gradient
    idx, target = np.array([[0, 2, 2], [4, 1, 0]]), rng.normal(size=(2, 3, 3))
    report = gradcheck(make_closure(emb, "mse", idx, target), emb.params)
    assert set(report) == {"weight"}


@pytest.mark.torch
def test_embedding_torch_parity(rng):
    torch = pytest.importorskip("torch")
    emb = nn.Embedding(9, 5, padding_idx=7, dtype=np.float64, seed=1)
    ref = torch.nn.Embedding(9, 5, padding_idx=7).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in emb.state_dict().items()})
    idx = rng.integers(0, 9, size=(4, 3, 6))
    idx[0, 0] = 7
    dy = rng.normal(size=(4, 3, 6, 5))
    out = ref(torch.tensor(idx))
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(emb(idx), out.detach().numpy(), rtol=1e-12)
    emb.backward(dy)
    np.testing.assert_allclose(emb.grads["weight"], ref.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


AFFINE, AFFINE_IDS = [(True, True), (True, False), (False, True)], ["affine", "nobias", "plain"]


@pytest.mark.parametrize(
    "shape, normalized",
    [((3, 4, 5), 5), ((2, 3, 5, 7), (5, 7)), ((7,), [7]), ((3, 1), 1)],
    ids=["last-1", "last-2", "no-leading", "one-entry"],
)
@pytest.mark.parametrize("affine, bias", AFFINE, ids=AFFINE_IDS)
def test_layer_norm_gradients_float64(shape, normalized, affine, bias, rng):
    ln = unequal(rng, nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias, dtype=np.float64), 0.5)
    x = 2.0 + 3.0 * rng.normal(size=shape)
    check_input_grad(ln, x, rng)
    if ln.params:
        report = gradcheck(make_closure(ln, "mse", x, rng.normal(size=shape)), ln.params)
        assert set(report) == ({"weight", "bias"} if bias else {"weight"})


def test_layer_norm_normalises_and_inits_like_torch(rng):
    ln = nn.LayerNorm((3, 5))
    assert ln.params["weight"].dtype == np.float32 and ln.params["weight"].shape == (3, 5)
    assert (ln.params["weight"] == 1).all() and not ln.params["bias"].any()
    x = 100 + 10 * rng.normal(size=(4, 3, 5))
    y = ln(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, rtol=1e-4)
    assert set(nn.LayerNorm(4, elementwise_affine=False).params) == set()
    assert set(nn.LayerNorm(4, bias=False).params) == {"weight"}
    rebuilt = nn.module_from_spec(nn.module_spec(ln))
    assert rebuilt.config() == ln.config() and rebuilt.normalized_shape == (3, 5)
    with pytest.raises(ValueError, match=r"x must end in the normalized_shape \(3, 5\)"):
        ln(np.ones((4, 5, 3)))


@pytest.mark.torch
@pytest.mark.parametrize("normalized, shape", [(6, (4, 3, 6)), ((3, 6), (2, 4, 3, 6))], ids=["last-1", "last-2"])
@pytest.mark.parametrize("affine, bias", AFFINE, ids=AFFINE_IDS)
def test_layer_norm_torch_parity(normalized, shape, affine, bias, rng):
    torch = pytest.importorskip("torch")
    ln = unequal(rng, nn.LayerNorm(normalized, eps=1e-3, elementwise_affine=affine, bias=bias, dtype=np.float64))
    ref = torch.nn.LayerNorm(normalized, eps=1e-3, elementwise_affine=affine, bias=bias).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in ln.state_dict().items()})
    x, dy = 1.5 + 2 * rng.normal(size=shape), rng.normal(size=shape)
    tx = torch.tensor(x, requires_grad=True)
    out = ref(tx)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(ln(x), out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ln.backward(dy), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, param in ref.named_parameters():
        np.testing.assert_allclose(ln.grads[name], param.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


def test_dropout_statistics_and_scale():
    p = 0.3
    drop = nn.Dropout(p, seed=0)
    x = np.ones((400, 500))
    y = drop(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    zero = y == 0
    n = x.size
    assert abs(zero.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)  # five standard deviations
    np.testing.assert_array_equal(y[~zero], 1 / (1 - p))  # inverted dropout: the kept entries are scaled
    assert abs(y.mean() - 1) < 0.01
    assert drop(x.astype(np.float32)).dtype == np.float32
    second = drop(x)
    assert (second == 0).mean() == pytest.approx(p, abs=0.01)
    assert not np.array_equal(second == 0, zero)  # every forward draws a new mask


def test_dropout_seeding_eval_identity_and_extremes(rng):
    x = rng.normal(size=(5, 7, 3))
    a, b = nn.Dropout(0.5, seed=4), nn.Dropout(0.5, seed=4)
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(nn.Dropout(0.5, seed=5)(x), nn.Dropout(0.5, seed=4)(x))
    drawn = nn.Dropout(0.5)
    assert isinstance(drawn.seed, int) and drawn.config() == {"p": 0.5, "seed": drawn.seed}
    rebuilt = nn.module_from_spec(nn.module_spec(nn.Dropout(0.5, seed=4)))
    np.testing.assert_array_equal(rebuilt(x), nn.Dropout(0.5, seed=4)(x))  # the config rebuilds the masks
    a.eval()
    y = a(x)
    np.testing.assert_array_equal(y, x)
    assert y is not x and not np.shares_memory(y, x)
    dy = rng.normal(size=x.shape)
    np.testing.assert_array_equal(a.backward(dy), dy)
    state = a._rng.bit_generator.state
    a(x)
    assert a._rng.bit_generator.state == state  # evaluation draws nothing
    a.train()
    np.testing.assert_array_equal(nn.Dropout(0.0, seed=0)(x), x)
    ones = nn.Dropout(1.0, seed=0)
    assert not ones(x).any() and not ones.backward(dy).any()


def test_dropout_gradient_uses_the_forward_mask(rng):
    p = 0.4
    drop = nn.Dropout(p, seed=2)
    x = rng.normal(size=(6, 9)) + 3.0  # no zeros in x: y == 0 exactly where the mask is
    y = drop(x)
    dy = rng.normal(size=x.shape)
    dx = drop.backward(dy)
    np.testing.assert_array_equal(dx, np.where(y == 0, 0.0, dy / (1 - p)))
    # central differences, each evaluation with the same mask (a new module with the same seed)
    numerical = numeric_input_grad(lambda z: float(np.sum(nn.Dropout(p, seed=2)(z) * dy)), x.copy())
    np.testing.assert_allclose(dx, numerical, rtol=1e-7, atol=1e-9)


@pytest.mark.torch
def test_dropout_torch_parity(rng):
    torch = pytest.importorskip("torch")
    p = 0.35
    drop = nn.Dropout(p, seed=7)
    x, dy = rng.normal(size=(4, 5, 6)) + 3.0, rng.normal(size=(4, 5, 6))
    y = drop(x)
    mask = torch.tensor(y != 0)  # our mask, fed to torch's dropout backward (dropout is linear in x)
    np.testing.assert_allclose(y, torch.ops.aten.native_dropout_backward(torch.tensor(x), mask, 1 / (1 - p)).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(drop.backward(dy),
                               torch.ops.aten.native_dropout_backward(torch.tensor(dy), mask, 1 / (1 - p)).numpy(),
                               rtol=1e-12)
    ref = torch.nn.Dropout(p).eval()
    drop.eval()
    tx = torch.tensor(x, requires_grad=True)
    out = ref(tx)
    out.backward(torch.tensor(dy))
    np.testing.assert_array_equal(drop(x), out.detach().numpy())
    np.testing.assert_array_equal(drop.backward(dy), tx.grad.numpy())


@pytest.mark.parametrize(
    "start, end, shape, want",
    [
        (1, -1, (2, 3, 4, 5), (2, 60)),
        (0, -1, (2, 3, 4), (24,)),
        (1, 2, (2, 3, 4, 5), (2, 12, 5)),
        (-3, -2, (2, 3, 4, 5), (2, 12, 5)),
        (2, 2, (2, 3, 4), (2, 3, 4)),
        (0, 0, (), (1,)),
    ],
)
def test_flatten_shapes(start, end, shape, want, rng):
    flat = nn.Flatten(start, end)
    x = rng.normal(size=shape)
    y = flat(x)
    assert y.shape == want
    np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
    dy = rng.normal(size=want)
    dx = flat.backward(dy)
    assert dx.shape == shape
    np.testing.assert_array_equal(dx.reshape(-1), dy.reshape(-1))
    if x.ndim:
        check_input_grad(flat, x, rng)


@pytest.mark.torch
def test_flatten_and_activations_torch_parity(rng):
    torch = pytest.importorskip("torch")
    x, dy3 = 3 * rng.normal(size=(3, 4, 5, 2)), rng.normal(size=(3, 4, 5, 2))
    for ours, ref, dy in [
        (nn.Flatten(), torch.nn.Flatten(), rng.normal(size=(3, 40))),
        (nn.Flatten(1, 2), torch.nn.Flatten(1, 2), rng.normal(size=(3, 20, 2))),
        (nn.Tanh(), torch.nn.Tanh(), dy3),
        (nn.ReLU(), torch.nn.ReLU(), dy3),
        (nn.Sigmoid(), torch.nn.Sigmoid(), dy3),
    ]:
        tx = torch.tensor(x, requires_grad=True)
        out = ref(tx)
        out.backward(torch.tensor(dy))
        np.testing.assert_allclose(ours(x), out.detach().numpy(), rtol=1e-12, err_msg=repr(ours))
        # atol: where tanh saturates, 1 - y**2 loses digits (torch's formula too), never more than ulp(1) * |dy|
        np.testing.assert_allclose(ours.backward(dy), tx.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=repr(ours))


@pytest.mark.parametrize("cls", [nn.Tanh, nn.ReLU, nn.Sigmoid])
def test_activation_gradients_float64(cls, rng):
    x = rng.normal(size=(3, 5, 7))
    x[np.abs(x) < 1e-3] = 0.5  # ReLU has a kink at 0
    check_input_grad(cls(), x, rng)


def test_activations_dtypes_and_extremes():
    x32 = np.array([-1.0, 0.0, 2.0], dtype=np.float32)
    for cls in (nn.Tanh, nn.ReLU, nn.Sigmoid):
        assert cls()(x32).dtype == np.float32 and cls()([1, 2]).dtype == np.float64
        module = cls()
        out = module(np.float64(0.5))
        assert isinstance(out, np.ndarray) and out.shape == ()
        assert module.backward(1.0).shape == ()
    drop = nn.Dropout(0.5, seed=0)
    assert drop(2.0).shape == () and drop.backward(1.0).shape == ()
    big = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    sig = nn.Sigmoid()
    y = sig(big)  # no overflow warning (warnings are errors here)
    np.testing.assert_allclose(y, [0.0, 1 / (1 + np.exp(40.0)), 0.5, 1 / (1 + np.exp(-40.0)), 1.0], rtol=1e-15)
    np.testing.assert_array_equal(nn.ReLU()(big), [0, 0, 0, 40, 1000])
    relu = nn.ReLU()
    relu(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(relu.backward(np.ones(3)), [0, 0, 1])  # no gradient at 0, as torch
    tanh = nn.Tanh()
    y = tanh(np.array([0.3]))
    y[0] = 5.0  # the caller's output is theirs to change
    np.testing.assert_allclose(tanh.backward(np.ones(1)), 1 - np.tanh(0.3) ** 2, rtol=1e-15)


def test_new_modules_config_round_trip():
    for module in [nn.Embedding(4, 2, padding_idx=1, dtype=np.float64, seed=3),
                   nn.LayerNorm([2, 3], eps=1e-3, bias=False), nn.Dropout(0.25, seed=9), nn.Flatten(0, 2),
                   nn.Tanh(), nn.ReLU(), nn.Sigmoid()]:
        rebuilt = nn.module_from_spec(nn.module_spec(module))
        assert type(rebuilt) is type(module) and rebuilt.config() == module.config()
        assert repr(rebuilt) == repr(module)
        for k, v in module.params.items():
            np.testing.assert_array_equal(rebuilt.params[k], v)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: nn.Embedding(0, 2), ValueError, "num_embeddings"),
        (lambda: nn.Embedding(3, 2.0), TypeError, "embedding_dim"),
        (lambda: nn.Embedding(3, 2, padding_idx=3), ValueError, "padding_idx"),
        (lambda: nn.Embedding(3, 2, padding_idx=-4), ValueError, "padding_idx"),
        (lambda: nn.Embedding(3, 2, padding_idx=True), TypeError, "padding_idx"),
        (lambda: nn.Embedding(3, 2, padding_idx=1.0), TypeError, "padding_idx"),
        (lambda: nn.Embedding(3, 2, dtype=np.int64), TypeError, "dtype"),
        (lambda: nn.Embedding(3, 2, seed=-1), ValueError, "seed"),
        (lambda: nn.Embedding(3, 2)(np.array([0.0, 1.0])), TypeError, "x must hold integer indices"),
        (lambda: nn.Embedding(3, 2)(np.array([True])), TypeError, "x must hold integer indices"),
        (lambda: nn.Embedding(3, 2)(np.array([0, 3])), ValueError, r"x must hold indices in \[0, 3\)"),
        (lambda: nn.Embedding(3, 2)(np.array([-1, 0])), ValueError, r"x must hold indices in \[0, 3\)"),
        (lambda: nn.Embedding(3, 2)(np.ma.masked_array([0, 1])), TypeError, "masked"),
        (lambda: nn.Embedding(3, 2)([[0], [1, 2]]), ValueError, "x could not be converted"),
        (lambda: nn.Embedding(3, 2).backward(np.ones((1, 2))), RuntimeError, "before forward"),
        (lambda: nn.Dropout(1.5), ValueError, r"p must be a probability in \[0, 1\]"),
        (lambda: nn.Dropout(-0.1), ValueError, "p must be"),
        (lambda: nn.Dropout(float("nan")), ValueError, "p must be"),
        (lambda: nn.Dropout("0.5"), TypeError, "p must be"),
        (lambda: nn.Dropout(True), TypeError, "p must be"),
        (lambda: nn.Dropout(0.5, seed=1.5), TypeError, "seed"),
        (lambda: nn.Dropout(0.5)(np.array([np.inf])), ValueError, "x contains NaN"),
        (lambda: nn.Dropout(0.5)(np.array(["a"])), TypeError, "x must hold real numbers"),
        (lambda: nn.Flatten(1.0), TypeError, "start_dim"),
        (lambda: nn.Flatten(1, True), TypeError, "end_dim"),
        (lambda: nn.Flatten(2, 1), ValueError, "start_dim .2. must not come after end_dim .1."),
        (lambda: nn.Flatten()(np.ones(3)), ValueError, "start_dim 1 is out of range for x with 1 axes"),
        (lambda: nn.Flatten(0, -4)(np.ones((2, 3))), ValueError, "end_dim -4 is out of range"),
        (lambda: nn.Flatten(-1, 0)(np.ones((2, 3))), ValueError, "must not come after end_dim"),
        (lambda: nn.Tanh()(np.array([1 + 1j])), TypeError, "x must hold real numbers"),
        (lambda: nn.Sigmoid()(np.array([np.nan])), ValueError, "x contains NaN"),
        (lambda: nn.ReLU().backward(np.ones(2)), RuntimeError, "before forward"),
        (lambda: nn.LayerNorm(0), ValueError, r"normalized_shape\[0\]"),
        (lambda: nn.LayerNorm(()), TypeError, "normalized_shape"),
        (lambda: nn.LayerNorm("3"), TypeError, "normalized_shape"),
        (lambda: nn.LayerNorm(True), TypeError, "normalized_shape"),
        (lambda: nn.LayerNorm((3, 2.5)), TypeError, r"normalized_shape\[1\]"),
        (lambda: nn.LayerNorm(3, eps=0), ValueError, "eps must be a finite number > 0"),
        (lambda: nn.LayerNorm(3, eps=float("inf")), ValueError, "eps must be"),
        (lambda: nn.LayerNorm(3, eps="small"), TypeError, "eps must be"),
        (lambda: nn.LayerNorm(3, elementwise_affine=1), TypeError, "elementwise_affine"),
        (lambda: nn.LayerNorm(3, bias=None), TypeError, "bias"),
        (lambda: nn.LayerNorm(3, dtype=np.float16), TypeError, "dtype"),
        (lambda: nn.LayerNorm(3)(np.ones((2, 4))), ValueError, "x must end in the normalized_shape"),
        (lambda: nn.LayerNorm((2, 3))(np.ones(3)), ValueError, "x must end in the normalized_shape"),
    ],
)
def test_new_modules_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def new_modules(rng):
    """(module, good input, bad input, bad dy) for each new module, float64."""
    x = rng.normal(size=(4, 3, 5))
    idx = rng.integers(0, 6, size=(4, 3))
    return [
        (nn.Embedding(6, 5, padding_idx=0, dtype=np.float64, seed=0), idx, idx + 10, np.ones((4, 3, 4))),
        (unequal(rng, nn.LayerNorm(5, dtype=np.float64)), x, x[..., :4], np.ones((4, 3, 4))),
        (nn.Dropout(0.5, seed=0), x, x * np.nan, np.ones((4, 3))),
        (nn.Flatten(), x, x[0, 0], np.ones((4, 3, 5))),
        (nn.Tanh(), x, x * np.nan, np.ones((4, 3))),
        (nn.ReLU(), x, x * np.nan, np.ones((4, 3))),
        (nn.Sigmoid(), x, x * np.nan, np.ones((4, 3))),
    ]


def test_new_modules_failed_calls_leave_them_as_they_were(rng):
    """A refused forward keeps what the last forward saved; a refused backward changes no gradient;
    a second backward is refused."""
    for module, x, bad_x, bad_dy in new_modules(rng):
        twin = nn.module_from_spec(nn.module_spec(module))
        twin.load_state_dict(module.state_dict())
        out = module(x)
        dy = rng.normal(size=out.shape)
        with pytest.raises(ValueError):
            module(bad_x)
        with pytest.raises(ValueError, match="dy must have shape"):
            module.backward(bad_dy)
        for g in module.grads.values():
            assert not g.any()
        twin(x)
        want = twin.backward(dy)
        got = module.backward(dy)  # the backward of the good forward
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want, err_msg=repr(module))
        for k, g in twin.grads.items():
            np.testing.assert_array_equal(module.grads[k], g, err_msg=repr(module))
        grads = {k: g.copy() for k, g in module.grads.items()}
        with pytest.raises(RuntimeError, match="already ran for the last forward.*each forward supports one backward"):
            module.backward(dy)
        for k, g in grads.items():
            np.testing.assert_array_equal(module.grads[k], g)
        np.testing.assert_array_equal(module(x), twin(x), err_msg=repr(module))  # the dropout stream moved in step


def test_new_modules_keep_their_own_copy_of_x(rng):
    for module, x, _, _ in new_modules(rng):
        twin = nn.module_from_spec(nn.module_spec(module))
        twin.load_state_dict(module.state_dict())
        mine = x.copy()
        out = module(mine)
        dy = rng.normal(size=out.shape)
        mine[...] = 1  # the caller reuses its buffer before backward
        twin(x)
        want, got = twin.backward(dy), module.backward(dy)
        if want is not None:
            np.testing.assert_array_equal(got, want, err_msg=repr(module))
        for k, g in twin.grads.items():
            np.testing.assert_array_equal(module.grads[k], g, err_msg=repr(module))


def test_sequential_failed_call_keeps_the_dropout_stream(rng):
    def make():
        return nn.Sequential(nn.Linear(3, 6, dtype=np.float64, seed=0), nn.Dropout(0.5, seed=1), nn.ReLU(),
                             nn.LayerNorm(6, dtype=np.float64), Picky())

    x1, x2, x3 = (rng.normal(size=(5, 3)) for _ in range(3))
    dy = rng.normal(size=(5, 6))
    want = make()
    want(x1)
    want_dx = want.backward(dy)
    want_next = want(x3)
    model = make()
    model(x1)
    model[4].reject = ValueError("x rejected")
    with pytest.raises(ValueError, match=r"Sequential module 4 \(Picky\): x rejected"):
        model(x2)  # the dropout drew a mask for x2: the restore puts its generator back
    model[4].reject = None
    np.testing.assert_array_equal(model.backward(dy), want_dx)  # the backward of the x1 call, its mask
    for k, g in want.grads.items():
        np.testing.assert_array_equal(model.grads[k], g, err_msg=k)
    np.testing.assert_array_equal(model(x3), want_next)
    with pytest.raises(ValueError, match=r"^Sequential module 1 \(LayerNorm\): x must end in the normalized_shape"):
        nn.Sequential(nn.Linear(3, 4, seed=0), nn.LayerNorm(6))(x1)


def embedding_lstm_stack(seed=0, padding_idx=2):
    model = nn.Sequential(nn.Embedding(11, 4, padding_idx=padding_idx, dtype=np.float64, seed=seed),
                          numrnn.LSTM(4, 5, dtype=np.float64, seed=seed + 1),
                          nn.Linear(5, 3, dtype=np.float64, seed=seed + 2))
    for k, v in model.params.items():  # non-zero, unequal biases
        if "bias" in k:
            v[:] = np.random.default_rng(len(k)).normal(size=v.shape)
    return model


@pytest.mark.torch
def test_embedding_lstm_linear_stack_torch_parity(rng):
    torch = pytest.importorskip("torch")
    model = embedding_lstm_stack()
    emb = torch.nn.Embedding(11, 4, padding_idx=2).double()
    lstm, head = torch.nn.LSTM(4, 5).double(), torch.nn.Linear(5, 3).double()
    for i, ref in enumerate((emb, lstm, head)):
        ref.load_state_dict({k: torch.tensor(v) for k, v in model[i].state_dict().items()})
    idx = rng.integers(0, 11, size=(7, 3))  # (T, B): repeated indices and the padding row
    idx[0, :] = 2
    idx[3, 1] = idx[4, 2] = 5
    dy = rng.normal(size=(7, 3, 3))
    out = head(lstm(emb(torch.tensor(idx)))[0])
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(model(idx), out.detach().numpy(), rtol=1e-12, atol=1e-13)
    assert model.backward(dy) is None
    refs = {"0": emb, "1": lstm, "2": head}
    for key, grad in model.grads.items():
        index, name = key.split(".", 1)
        np.testing.assert_allclose(grad, getattr(refs[index], name).grad.numpy(), rtol=1e-12, atol=1e-13, err_msg=key)
    assert not model.grads["0.weight"][2].any()


def test_embedding_stack_gradcheck_float64(rng):
    model = nn.Sequential(nn.Embedding(7, 3, padding_idx=0, dtype=np.float64, seed=0),
                          numrnn.GRU(3, 5, dtype=np.float64, seed=1), nn.LastStep(), nn.LayerNorm(5, dtype=np.float64),
                          nn.Tanh(), nn.Dropout(0.5, seed=2), nn.Linear(5, 2, dtype=np.float64, seed=3))
    unequal(rng, model[3], 0.5)
    model.eval()  # dropout off: every evaluation of the closure sees the same function
    idx, target = rng.integers(1, 7, size=(6, 4)), rng.normal(size=(4, 2))  # no padding: it gets no gradient
    report = gradcheck(make_closure(model, "mse", idx, target), model.params, max_per_param=8)
    assert {"0.weight", "3.weight", "3.bias", "6.weight"} <= set(report)


def test_embedding_stack_trains_with_fit(rng):
    from numrnn.train import fit

    # the class of a sequence is whether token 1 occurs in it
    idx = rng.integers(1, 6, size=(5, 64))
    target = (idx == 1).any(axis=0).astype(np.float64)[:, None]
    model = nn.Sequential(nn.Embedding(6, 4, padding_idx=0, seed=0), nn.Dropout(0.1, seed=1), numrnn.GRU(4, 8, seed=2),
                          nn.LastStep(), nn.ReLU(), nn.Linear(8, 1, seed=3), nn.Sigmoid())
    before = float(np.mean((model.eval()(idx) - target) ** 2))
    history = fit(model, idx, target, optimizer=numrnn.optim.Adam(lr=0.05), epochs=15, batch_size=16, seed=0)
    after = float(np.mean((model(idx) - target) ** 2))
    assert not model.training and not model[1].training  # fit ends in evaluation mode
    assert after < 0.5 * before and history["train_loss"][-1] < history["train_loss"][0]
    assert not model.params["0.weight"][0].any()  # the padding row never moved
