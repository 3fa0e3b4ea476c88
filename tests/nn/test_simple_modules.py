"""nn.Embedding, LayerNorm, Dropout, Flatten and the activations: gradients, PyTorch parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn import nn
from numrnn.train import gradcheck, make_closure
from nn_helpers import check_input_grad, numeric_input_grad, unequal


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
