"""numrnn.convert: PyTorch twins both ways (skipped without torch) and Keras weight import.

PyTorch: every converted module holds the same parameters bit for bit (copies, not shared),
the same configuration and mode, and gives the same outputs to 1e-12 in float64; a round trip
gives identical parameters.  Keras: the weights are checked against a NumPy implementation of
Keras' own equations (gate order, where the GRU's reset gate applies), written here from Keras'
documented formulas, to 1e-12 in float64.  Keras is not needed.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import numrnn
from numrnn import nn
from numrnn.convert import from_keras_weights, from_torch, to_torch

TOL = 1e-12


def _torch():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------------------- import


def test_import_does_not_import_torch():
    code = "import sys, numrnn.convert; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------------------- PyTorch

RECURRENT_CASES = [
    ("RNN", dict(nonlinearity="tanh")),
    ("RNN", dict(nonlinearity="relu", bias=False)),
    ("RNN", dict(nonlinearity="tanh", num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.5)),
    ("LSTM", dict(bias=False, num_layers=3)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, bidirectional=True, dropout=0.1)),
    ("GRU", dict(bias=False, batch_first=True)),
]
CASE_IDS = [f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for name, kw in RECURRENT_CASES]


def _run_torch(torch, module, x, state=None):
    with torch.no_grad():
        if state is None:
            out = module(torch.from_numpy(x))
        else:
            state = tuple(torch.from_numpy(s) for s in state) if isinstance(state, tuple) else torch.from_numpy(state)
            out = module(torch.from_numpy(x), state)
    if isinstance(out, tuple):
        y, s = out
        s = tuple(t.numpy() for t in s) if isinstance(s, tuple) else s.numpy()
        return y.numpy(), s
    return out.numpy()


def _inputs(rng, layer, batch=3, steps=6):
    x = rng.normal(size=(batch, steps, layer.input_size) if layer.batch_first else (steps, batch, layer.input_size))
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    h0 = rng.normal(size=shape)
    state = (h0, rng.normal(size=shape)) if isinstance(layer, numrnn.LSTM) else h0
    return x, state


def _assert_states_close(a, b):
    if isinstance(a, tuple):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=0, atol=TOL)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def _assert_same_torch_params(torch, a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", RECURRENT_CASES, ids=CASE_IDS)
def test_recurrent_from_torch(name, kwargs, rng):
    torch = _torch()
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(4, 5, dtype=torch.float64, **kwargs).eval()
    layer = from_torch(ref, backend="cpu")
    assert type(layer) is getattr(numrnn, name)
    expected = dict(input_size=4, hidden_size=5, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                    bidirectional=False, dtype="float64")
    expected.update({k: v for k, v in kwargs.items() if k != "nonlinearity"})
    assert {k: layer.config()[k] for k in expected} == expected
    if name == "RNN":
        assert layer.nonlinearity == kwargs["nonlinearity"]
    assert not layer.training
    ref_state = ref.state_dict()
    assert list(layer.params) == list(ref_state)
    for k, v in layer.params.items():
        assert v.dtype == np.float64 and np.array_equal(v, ref_state[k].numpy()), k
    x, state = _inputs(rng, layer)
    y, s = layer(x, state)
    ty, ts = _run_torch(torch, ref, x, state)
    np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
    _assert_states_close(s, ts)


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", RECURRENT_CASES, ids=CASE_IDS)
def test_recurrent_to_torch_and_round_trip(name, kwargs, rng):
    torch = _torch()
    layer = getattr(numrnn, name)(4, 5, dtype=np.float64, seed=3, backend="cpu", **kwargs).eval()
    twin = to_torch(layer)
    assert type(twin) is getattr(torch.nn, name) and not twin.training
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"):
        assert getattr(twin, attr) == getattr(layer, attr), attr
    if name == "RNN":
        assert twin.nonlinearity == layer.nonlinearity
    for k, v in twin.state_dict().items():
        assert v.dtype == torch.float64 and np.array_equal(v.numpy(), layer.params[k]), k
    x, state = _inputs(rng, layer)
    y, s = layer(x, state)
    ty, ts = _run_torch(torch, twin, x, state)
    np.testing.assert_allclose(ty, y, rtol=0, atol=TOL)
    _assert_states_close(ts, s)
    # numrnn -> torch -> numrnn: identical parameters and configuration (but the seed)
    back = from_torch(twin, backend="cpu")
    assert {k: v for k, v in back.config().items() if k != "seed"} == {
        k: v for k, v in layer.config().items() if k != "seed"}
    assert list(back.params) == list(layer.params)
    for k in layer.params:
        assert np.array_equal(back.params[k], layer.params[k]) and back.params[k].dtype == layer.params[k].dtype
    # torch -> numrnn -> torch: identical state_dict
    _assert_same_torch_params(torch, to_torch(back), twin)


@pytest.mark.torch
def test_weights_are_copied_not_shared():
    torch = _torch()
    ref = torch.nn.LSTM(2, 3, dtype=torch.float64)
    layer = from_torch(ref, backend="cpu")
    saved = {k: v.copy() for k, v in layer.params.items()}
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(1.0)
    for k, v in layer.params.items():
        assert np.array_equal(v, saved[k]), k
    twin = to_torch(layer)
    before = {k: v.clone() for k, v in twin.state_dict().items()}
    for v in layer.params.values():
        v += 1.0
    for k, v in twin.state_dict().items():
        assert torch.equal(v, before[k]), k
    lin = nn.Linear(3, 2, seed=0)
    tlin = to_torch(lin)
    lin.params["weight"][...] = 7
    assert not torch.any(tlin.weight == 7)


@pytest.mark.torch
def test_float32_kept_and_bitwise():
    torch = _torch()
    ref = torch.nn.GRU(3, 4)  # float32
    layer = from_torch(ref, backend="cpu")
    assert layer.dtype == np.float32
    for k, v in ref.state_dict().items():
        assert layer.params[k].dtype == np.float32 and np.array_equal(layer.params[k], v.numpy())
    twin = to_torch(layer)
    assert next(twin.parameters()).dtype == torch.float32
    _assert_same_torch_params(torch, twin, ref)
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x)[0], _run_torch(torch, twin, x)[0], rtol=0, atol=1e-5)


@pytest.mark.torch
def test_training_mode_carried():
    torch = _torch()
    ref = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.3)).double()
    ref[1].eval()
    model = from_torch(ref)
    assert model.training and model[0].training and not model[1].training
    twin = to_torch(model.eval())
    assert not twin.training and not twin[0].training and not twin[1].training
    assert to_torch(numrnn.GRU(2, 3, seed=0, backend="cpu")).training


def _nn_modules(torch):
    """(numrnn module, matching input) pairs of every numrnn.nn twin, in float64."""
    rng = np.random.default_rng(7)
    ln = nn.LayerNorm((2, 3), eps=1e-3, dtype=np.float64)
    ln.params["weight"][...] = rng.normal(size=(2, 3))
    ln.params["bias"][...] = rng.normal(size=(2, 3))
    return [
        (nn.Linear(4, 3, dtype=np.float64, seed=1), rng.normal(size=(5, 4))),
        (nn.Linear(4, 3, bias=False, dtype=np.float64, seed=2), rng.normal(size=(2, 5, 4))),
        (nn.Embedding(9, 4, padding_idx=3, dtype=np.float64, seed=3), rng.integers(0, 9, size=(4, 5))),
        (nn.Embedding(6, 2, dtype=np.float64, seed=4), rng.integers(0, 6, size=7)),
        (ln, rng.normal(size=(4, 2, 3))),
        (nn.LayerNorm(3, elementwise_affine=False, dtype=np.float64), rng.normal(size=(4, 3))),
        (nn.LayerNorm(3, bias=False, dtype=np.float64), rng.normal(size=(4, 3))),
        (nn.Flatten(), rng.normal(size=(2, 3, 4))),
        (nn.Flatten(0, 1), rng.normal(size=(2, 3, 4))),
        (nn.Tanh(), rng.normal(size=(3, 4))),
        (nn.ReLU(), rng.normal(size=(3, 4))),
        (nn.Sigmoid(), 20 * rng.normal(size=(3, 4))),
        (nn.Dropout(0.4, seed=0).eval(), rng.normal(size=(3, 4))),
    ]


@pytest.mark.torch
def test_nn_modules_both_ways():
    torch = _torch()
    for module, x in _nn_modules(torch):
        label = repr(module)
        twin = to_torch(module)
        assert type(twin).__name__ == type(module).__name__, label
        expected = module(x)
        got = _run_torch(torch, twin, x)
        assert got.shape == expected.shape and got.dtype == np.float64, label
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL, err_msg=label)
        back = from_torch(twin, dtype=np.float64)  # the dtype of parameterless modules
        assert type(back) is type(module), label
        ignored = {"seed"} if module.params else {"seed", "dtype"}  # no parameters: PyTorch keeps no dtype
        config = {k: v for k, v in back.config().items() if k not in ignored}
        assert config == {k: v for k, v in module.config().items() if k not in ignored}, label
        assert list(back.params) == list(module.params), label
        for k in module.params:
            assert np.array_equal(back.params[k], module.params[k]) and back.params[k].dtype == np.float64, label
        np.testing.assert_allclose(back(x), expected, rtol=0, atol=TOL, err_msg=label)
        _assert_same_torch_params(torch, to_torch(back), twin)


@pytest.mark.torch
def test_torch_modules_from_torch():
    torch = _torch()
    tnn = torch.nn
    torch.manual_seed(1)
    rng = np.random.default_rng(8)
    cases = [
        (tnn.Linear(3, 2), rng.normal(size=(4, 3))),
        (tnn.Embedding(5, 3, padding_idx=-1), rng.integers(0, 5, size=(2, 3))),
        (tnn.Embedding(5, 3, sparse=True), rng.integers(0, 5, size=(2, 3))),
        (tnn.LayerNorm([2, 2], eps=1e-4), rng.normal(size=(3, 2, 2))),
        (tnn.Flatten(-2, -1), rng.normal(size=(2, 3, 4))),
        (tnn.ReLU(inplace=True), rng.normal(size=(3,))),
        (tnn.Dropout(0.7).eval(), rng.normal(size=(3,))),
    ]
    for ref, x in cases:
        ref = ref.double()
        with torch.no_grad():  # LayerNorm's defaults are ones and zeros: make them informative
            for p in ref.parameters():
                p.copy_(torch.randn_like(p))
        model = from_torch(ref)
        np.testing.assert_allclose(model(x), _run_torch(torch, ref, x.copy()), rtol=0, atol=TOL, err_msg=repr(ref))
    assert from_torch(tnn.Embedding(5, 3, padding_idx=-1)).padding_idx == 4
    assert from_torch(tnn.Dropout(0.7)).p == 0.7
    assert from_torch(tnn.LayerNorm(3, bias=False).double()).config()["bias"] is False


@pytest.mark.torch
def test_sequential_both_ways(rng):
    torch = _torch()
    tnn = torch.nn
    ref = tnn.Sequential(
        tnn.Linear(3, 4), tnn.Tanh(), tnn.Sequential(tnn.LayerNorm(4), tnn.Linear(4, 4)), tnn.Dropout(0.1),
        tnn.GRU(4, 5, num_layers=2, bidirectional=True),
    ).double().eval()
    model = from_torch(ref, backend="cpu", seed=5)
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Sequential", "Dropout", "GRU"]
    assert model[0].dtype == np.float64 and model[2][0].dtype == np.float64
    assert model[0].seed != model[3].seed  # each child its own seed
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    assert list(model.params) == list(sd)
    for k in sd:
        assert np.array_equal(model.params[k], sd[k]), k
    x = rng.normal(size=(6, 2, 3))
    y = model(x)
    ty, th = _run_torch(torch, ref, x)  # torch's stack ends in the GRU's (output, h_n)
    np.testing.assert_allclose(y, ty, rtol=0, atol=TOL)
    np.testing.assert_allclose(model.states[-1], th, rtol=0, atol=TOL)
    twin = to_torch(model)
    _assert_same_torch_params(torch, twin, ref)
    back = from_torch(twin, backend="cpu")
    for k, v in model.params.items():
        assert np.array_equal(back.params[k], v), k
    # a parameterless module in a float64 stack is float64 too
    stack = from_torch(tnn.Sequential(tnn.Linear(2, 3), tnn.LayerNorm(3, elementwise_affine=False)).double())
    assert stack[1].dtype == np.float64
    assert from_torch(tnn.LayerNorm(3, elementwise_affine=False)).dtype == np.float32
    assert from_torch(tnn.LayerNorm(3, elementwise_affine=False), dtype=np.float64).dtype == np.float64
    assert from_torch(tnn.Linear(2, 2), dtype=np.float64).dtype == np.float32  # parameters keep theirs


@pytest.mark.torch
def test_refusals():
    torch = _torch()
    tnn = torch.nn
    with pytest.raises(TypeError, match="LastStep has no PyTorch twin"):
        to_torch(nn.LastStep())
    stack = nn.Sequential(numrnn.GRU(2, 3, seed=0, backend="cpu"), nn.LastStep(), nn.Linear(3, 1, seed=0))
    with pytest.raises(TypeError, match=r"Sequential module 0 \(GRU\) is recurrent and not last"):
        to_torch(stack)
    with pytest.raises(TypeError, match=r"Sequential module 1 \(LastStep\): LastStep has no PyTorch twin"):
        to_torch(nn.Sequential(nn.Linear(2, 2, seed=0), nn.LastStep()))
    with pytest.raises(TypeError, match=r"Sequential module 0 \(Sequential\) is recurrent and not last"):
        to_torch(nn.Sequential(nn.Sequential(numrnn.RNN(2, 2, seed=0, backend="cpu")), nn.Linear(2, 2, seed=0)))
    with pytest.raises(ValueError, match="reset_after=False.*no PyTorch twin"):
        to_torch(numrnn.GRU(2, 3, reset_after=False, seed=0, backend="cpu"))
    with pytest.raises(ValueError, match=r"Sequential module 1 \(GRU\): GRU with reset_after=False"):
        to_torch(nn.Sequential(nn.Linear(2, 2, seed=0), numrnn.GRU(2, 3, reset_after=False, seed=0, backend="cpu")))

    class Mine(nn.Module):
        def config(self):
            return {}

    with pytest.raises(TypeError, match="Mine has no PyTorch twin"):
        to_torch(Mine())
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got LSTM"):
        from_torch(numrnn.LSTM(2, 2, seed=0, backend="cpu"))
    with pytest.raises(TypeError, match=r"torch.nn.modules.conv.Conv1d has no numrnn twin"):
        from_torch(tnn.Conv1d(2, 2, 3))
    with pytest.raises(TypeError, match=r"Sequential module 1 \(GELU\): .*GELU has no numrnn twin"):
        from_torch(tnn.Sequential(tnn.Linear(2, 2), tnn.GELU()))
    with pytest.raises(TypeError, match="Dropout1d has no numrnn twin"):  # exact classes only
        from_torch(tnn.Dropout1d(0.1))
    with pytest.raises(TypeError, match=r"module 0 \(LSTM\) is recurrent and not last"):
        from_torch(tnn.Sequential(tnn.LSTM(2, 3), tnn.Linear(3, 1)))
    with pytest.raises(ValueError, match="proj_size=2 has no numrnn twin"):
        from_torch(tnn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="max_norm=1.0 has no numrnn twin"):
        from_torch(tnn.Embedding(4, 2, max_norm=1.0))
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        from_torch(tnn.Embedding(4, 2, scale_grad_by_freq=True))
    with pytest.raises(TypeError, match="dtype torch.float16"):
        from_torch(tnn.Linear(2, 2).half())
    with pytest.raises(TypeError, match="mixes parameter dtypes"):
        lin = tnn.Linear(2, 2)
        lin.bias.data = lin.bias.data.double()
        from_torch(lin)
    with pytest.raises(ValueError, match="empty torch.nn.Sequential"):
        from_torch(tnn.Sequential())
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        from_torch(tnn.Tanh(), dtype=np.int32)


@pytest.mark.torch
def test_dropout_one_layer_converts_without_torch_warning():
    _torch()
    layer = numrnn.LSTM(2, 3, dropout=0.5, seed=0, backend="cpu")  # legal, no effect with one layer
    assert to_torch(layer).dropout == 0.5  # torch's UserWarning would fail under filterwarnings=error


# ------------------------------------------------------------------------------- Keras
# Keras' equations, written from its documentation (keras.layers.LSTM / GRU / SimpleRNN): inputs
# (B, T, F), weights kernel (I, G*H), recurrent_kernel (H, G*H), bias; outputs every step.


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def keras_lstm(x, kernel, recurrent, bias, h, c):
    """Keras LSTM: gates i, f, c, o; h = o * tanh(c)."""
    ys = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent
        if bias is not None:
            z = z + bias
        zi, zf, zc, zo = np.split(z, 4, axis=-1)
        c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zc)
        h = _sigmoid(zo) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), (h, c)


def keras_gru(x, kernel, recurrent, bias, h, reset_after):
    """Keras GRU: gates z, r, h; h' = z * h + (1 - z) * hh.

    reset_after=True: bias (2, 3H) = [input bias, recurrent bias], hh = tanh(x Kh + bxh + r * (h Uh + bhh)).
    reset_after=False: bias (3H,) on the input side only, hh = tanh(x Kh + bh + (r * h) Uh).
    """
    units = recurrent.shape[0]
    ys = []
    for t in range(x.shape[1]):
        matrix_x = x[:, t] @ kernel
        if bias is not None:
            matrix_x = matrix_x + (bias[0] if reset_after else bias)
        x_z, x_r, x_h = np.split(matrix_x, 3, axis=-1)
        if reset_after:
            inner = h @ recurrent
            if bias is not None:
                inner = inner + bias[1]
        else:
            inner = h @ recurrent[:, : 2 * units]
        z = _sigmoid(x_z + inner[:, :units])
        r = _sigmoid(x_r + inner[:, units : 2 * units])
        if reset_after:
            rec_h = r * inner[:, 2 * units :]
        else:
            rec_h = (r * h) @ recurrent[:, 2 * units :]
        hh = np.tanh(x_h + rec_h)
        h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys, axis=1), h


def keras_simple_rnn(x, kernel, recurrent, bias, h, activation):
    act = np.tanh if activation == "tanh" else (lambda v: np.maximum(v, 0))
    ys = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent
        if bias is not None:
            z = z + bias
        h = act(z)
        ys.append(h)
    return np.stack(ys, axis=1), h


def _keras_weights(rng, layer_type, inputs, units, use_bias, reset_after=True):
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[layer_type]
    w = [rng.normal(scale=0.5, size=(inputs, gates * units)), rng.normal(scale=0.5, size=(units, gates * units))]
    if use_bias:
        shape = (2, gates * units) if layer_type == "GRU" and reset_after else (gates * units,)
        w.append(rng.normal(scale=0.5, size=shape))
    return w


def _keras_reference(layer_type, x, w, state, reset_after=True, activation="tanh"):
    bias = w[2] if len(w) == 3 else None
    if layer_type == "LSTM":
        return keras_lstm(x, w[0], w[1], bias, *state)
    if layer_type == "GRU":
        return keras_gru(x, w[0], w[1], bias, state, reset_after)
    return keras_simple_rnn(x, w[0], w[1], bias, state, activation)


KERAS_CASES = [
    ("LSTM", dict(use_bias=True), {}),
    ("LSTM", dict(use_bias=False), {}),
    ("GRU", dict(use_bias=True, reset_after=True), {}),
    ("GRU", dict(use_bias=True, reset_after=False), {}),
    ("GRU", dict(use_bias=False, reset_after=True), {}),
    ("GRU", dict(use_bias=False, reset_after=False), dict(reset_after=False)),
    ("SimpleRNN", dict(use_bias=True), {}),
    ("SimpleRNN", dict(use_bias=True), dict(activation="relu")),
    ("SimpleRNN", dict(use_bias=False), {}),
]


@pytest.mark.parametrize("layer_type, make, kwargs", KERAS_CASES,
                         ids=[f"{t}-{m}-{k}" for t, m, k in KERAS_CASES])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_weights_match_keras_equations(layer_type, make, kwargs, bidirectional, rng):
    inputs, units, batch, steps = 3, 4, 2, 7
    reset_after = make.get("reset_after", True)
    w = _keras_weights(rng, layer_type, inputs, units, make["use_bias"], reset_after)
    weights = list(w)
    if bidirectional:
        w_back = _keras_weights(rng, layer_type, inputs, units, make["use_bias"], reset_after)
        weights += w_back
    layer = from_keras_weights(layer_type, weights, bidirectional=bidirectional, backend="cpu", **kwargs)
    assert type(layer).__name__ == {"SimpleRNN": "RNN"}.get(layer_type, layer_type)
    assert layer.batch_first and layer.bias == make["use_bias"] and layer.dtype == np.float64
    assert layer.bidirectional == bidirectional and layer.input_size == inputs and layer.hidden_size == units
    if layer_type == "GRU":
        assert layer.reset_after == reset_after

    x = rng.normal(size=(batch, steps, inputs))
    directions = 2 if bidirectional else 1
    lstm = layer_type == "LSTM"
    h0 = rng.normal(size=(directions, batch, units))
    c0 = rng.normal(size=(directions, batch, units)) if lstm else None
    activation = kwargs.get("activation", "tanh")

    def state(d):
        return (h0[d], c0[d]) if lstm else h0[d]

    y_ref, s_ref = _keras_reference(layer_type, x, w, state(0), reset_after, activation)
    finals = [s_ref]
    if bidirectional:  # Keras' Bidirectional: the backward layer runs on x reversed, its outputs flipped back
        y_back, s_back = _keras_reference(layer_type, x[:, ::-1], w_back, state(1), reset_after, activation)
        y_ref = np.concatenate([y_ref, y_back[:, ::-1]], axis=-1)
        finals.append(s_back)
    y, s = layer(x, (h0, c0) if lstm else h0)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL)
    for d, final in enumerate(finals):
        if lstm:
            np.testing.assert_allclose(s[0][d], final[0], rtol=0, atol=TOL)
            np.testing.assert_allclose(s[1][d], final[1], rtol=0, atol=TOL)
        else:
            np.testing.assert_allclose(s[d], final, rtol=0, atol=TOL)


def test_keras_gru_layout_by_hand():
    """Gate reorder z, r, h -> r, z, n and the bias split, entry by entry."""
    units = 2
    kernel = np.arange(1 * 3 * units, dtype=np.float64).reshape(1, 3 * units)  # columns z0 z1 r0 r1 h0 h1
    recurrent = 100 + np.arange(units * 3 * units, dtype=np.float64).reshape(units, 3 * units)
    bias = np.array([[1.0, 2, 3, 4, 5, 6], [7.0, 8, 9, 10, 11, 12]])
    layer = from_keras_weights("gru", [kernel, recurrent, bias], backend="cpu")
    np.testing.assert_array_equal(layer.params["weight_ih_l0"][:, 0], [2, 3, 0, 1, 4, 5])
    np.testing.assert_array_equal(layer.params["weight_hh_l0"], recurrent[:, [2, 3, 0, 1, 4, 5]].T)
    np.testing.assert_array_equal(layer.params["bias_ih_l0"], [3, 4, 1, 2, 5, 6])
    np.testing.assert_array_equal(layer.params["bias_hh_l0"], [9, 10, 7, 8, 11, 12])
    flat = from_keras_weights("GRU", [kernel, recurrent, bias[0]], backend="cpu")
    assert not flat.reset_after
    np.testing.assert_array_equal(flat.params["bias_ih_l0"], [3, 4, 1, 2, 5, 6])
    np.testing.assert_array_equal(flat.params["bias_hh_l0"], np.zeros(6))
    lstm = from_keras_weights("LSTM", [np.ones((3, 8)), np.eye(2, 8), np.arange(8.0)], backend="cpu")
    np.testing.assert_array_equal(lstm.params["bias_ih_l0"], np.arange(8.0))  # i, f, c, o stays i, f, g, o
    np.testing.assert_array_equal(lstm.params["weight_hh_l0"], np.eye(2, 8).T)


def test_keras_weights_are_copied_and_dtype_kept(rng):
    w = [a.astype(np.float32) for a in _keras_weights(rng, "LSTM", 2, 3, True)]
    layer = from_keras_weights("LSTM", w, batch_first=False, backend="cpu")
    assert layer.dtype == np.float32 and not layer.batch_first
    assert all(v.dtype == np.float32 for v in layer.params.values())
    w[0][...] = 9
    assert not np.any(layer.params["weight_ih_l0"] == 9)
    as64 = from_keras_weights("LSTM", w, dtype=np.float64, backend="cpu")
    assert as64.dtype == np.float64
    np.testing.assert_array_equal(as64.params["weight_ih_l0"], w[0].T.astype(np.float64))


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (("Conv1D", []), {}, ValueError, r"layer_type must be one of \['GRU', 'LSTM', 'SimpleRNN'\]"),
        ((3, []), {}, TypeError, "layer_type must be one of"),
        (("LSTM", np.zeros((2, 8))), {}, TypeError, "weights must be a list of arrays"),
        (("LSTM", [np.zeros((2, 8))]), {}, ValueError, "weights must be .* got 1 arrays"),
        (("LSTM", [np.zeros((2, 8)), np.zeros((2, 6)), np.zeros(8)]), {}, ValueError,
         r"weights\[1\] \(recurrent_kernel\) of a LSTM must have shape \(H, 4\*H\), got \(2, 6\)"),
        (("LSTM", [np.zeros((2, 6)), np.zeros((2, 8)), np.zeros(8)]), {}, ValueError,
         r"weights\[0\] \(kernel\) of a LSTM with H = 2 must have shape \(I, 8\), got \(2, 6\)"),
        (("LSTM", [np.zeros((2, 8)), np.zeros((2, 8)), np.zeros(6)]), {}, ValueError,
         r"weights\[2\] \(bias\) of a LSTM with H = 2 must have shape \(8,\), got \(6,\)"),
        (("GRU", [np.zeros((2, 6)), np.zeros((2, 6)), np.zeros(6)]), dict(reset_after=True), ValueError,
         r"bias\) of a GRU with reset_after=True and H = 2 must have shape \(2, 6\), got \(6,\)"),
        (("GRU", [np.zeros((2, 6)), np.zeros((2, 6)), np.zeros((2, 6))]), dict(reset_after=False), ValueError,
         r"reset_after=False and H = 2 must have shape \(6,\), got \(2, 6\)"),
        (("GRU", [np.zeros((2, 6)), np.zeros((2, 6))]), dict(reset_after=1), TypeError, "reset_after must be a bool"),
        (("LSTM", [np.zeros((2, 8)), np.zeros((2, 8))]), dict(recurrent_activation="hard_sigmoid"), ValueError,
         "recurrent_activation of a Keras LSTM must be 'sigmoid'"),
        (("GRU", [np.zeros((2, 6)), np.zeros((2, 6))]), dict(activation="relu"), ValueError,
         "activation of a Keras GRU must be 'tanh'"),
        (("SimpleRNN", [np.zeros((2, 2)), np.zeros((2, 2))]), dict(activation="sigmoid"), ValueError,
         "activation of a SimpleRNN must be 'tanh' or 'relu'"),
        (("SimpleRNN", [np.zeros((2, 2)), np.zeros((2, 2))]), dict(recurrent_activation="sigmoid"), ValueError,
         "recurrent_activation must be None for a SimpleRNN"),
        (("LSTM", [np.zeros((2, 8)), np.zeros((2, 8))]), dict(reset_after=True), ValueError,
         "reset_after applies to a GRU only"),
        (("LSTM", [np.zeros((2, 8)), np.zeros((2, 8)), np.zeros(8)]), dict(bidirectional=True), ValueError,
         "for each direction .* got 3 arrays"),
        (("SimpleRNN", [np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 2))]),
         dict(bidirectional=True), ValueError, r"weights\[2\] \(backward layer\) must have the shape of weights\[0\]"),
        (("SimpleRNN", [np.zeros((2, 2), np.float32), np.zeros((2, 2))]), {}, TypeError,
         "weights have dtypes .* pass dtype="),
        (("SimpleRNN", [np.zeros((2, 2), np.float16), np.zeros((2, 2), np.float16)]), {}, TypeError, "pass dtype="),
        (("SimpleRNN", [np.zeros((2, 2)), np.full((2, 2), np.nan)]), {}, ValueError, r"weights\[1\] contains NaN"),
        (("SimpleRNN", [np.zeros((2, 2)), np.array([["a", "b"], ["c", "d"]])]), {}, TypeError,
         r"weights\[1\] must hold real numbers"),
        (("SimpleRNN", [np.zeros((2, 2)), np.zeros((2, 2))]), dict(dtype=np.int32), TypeError,
         "dtype must be float32 or float64"),
    ],
)
def test_keras_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        from_keras_weights(*args, backend="cpu", **kwargs)


@pytest.mark.torch
def test_keras_lstm_to_torch_twin(rng):
    """A Keras LSTM converts on to PyTorch: the zero bias_hh is a real parameter there."""
    torch = _torch()
    w = _keras_weights(rng, "LSTM", 3, 4, True)
    layer = from_keras_weights("LSTM", w, backend="cpu").eval()
    twin = to_torch(layer)
    x = rng.normal(size=(2, 5, 3))
    y_ref, _ = keras_lstm(x, *w, np.zeros((2, 4)), np.zeros((2, 4)))
    np.testing.assert_allclose(_run_torch(torch, twin, x)[0], y_ref, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "layer_type, kwargs, cell",
    [("LSTM", {}, "lstm"), ("GRU", {}, "gru"), ("GRU", dict(reset_after=False), "gru_reset_before"),
     ("SimpleRNN", {}, "rnn_tanh"), ("SimpleRNN", dict(activation="relu"), "rnn_relu")],
)
def test_keras_layers_follow_the_cell_registry(layer_type, kwargs, cell):
    """Each Keras layer builds the layer of its cell family (the class named by the family, the
    RNN's family from the activation, the GRU's from reset_after), with the registry's gates;
    KERAS_LAYERS keeps its public form."""
    from numrnn.cells import cell_family
    from numrnn.convert import KERAS_LAYERS

    assert KERAS_LAYERS == {"LSTM": (4, "i, f, c, o"), "GRU": (3, "z, r, h"), "SimpleRNN": (1, "")}
    family = cell_family(cell)
    assert KERAS_LAYERS[layer_type][0] == family.gates
    units = 2
    bias = np.zeros((2, family.gates * units)) if cell == "gru" else np.zeros(family.gates * units)
    weights = [np.zeros((3, family.gates * units)), np.zeros((units, family.gates * units)), bias]
    layer = from_keras_weights(layer_type, weights, backend="cpu", **kwargs)
    assert layer.cell == cell
    assert type(layer).__name__ == family.layer
