"""RNN / LSTM / GRU layers against the naive reference and central finite differences.

Everything here runs in float64 with random, non-zero, unequal biases and odd sizes
(1, 3, 7) over the option grid of :func:`helpers.option_grid`.  PyTorch parity lives
in ``test_recurrent_torch.py``; bad input in ``test_recurrent_validation.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import naive
from helpers import (
    MODES,
    Case,
    assert_rel_close,
    backward,
    forward,
    make_layer,
    naive_forward,
    option_grid,
    random_inputs,
    random_params,
    scalar_loss,
    set_params,
)

GRID = option_grid()

FORWARD_TOL = dict(rtol=1e-12, atol=1e-12)
GRAD_TOL = dict(rtol=1e-6, atol=1e-7)


def _state_names(case):
    return ("h0", "c0") if case.is_lstm else ("h0",)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("case", [c for c in GRID if not c.unbatched], ids=Case.id)
def test_parameter_names_shapes_and_order(case):
    layer = make_layer(case)
    shapes = naive.param_shapes(case.cell, case.input_size, case.hidden_size, case.num_layers,
                                case.bidirectional, case.bias)
    assert list(layer.params) == naive.param_names(case.num_layers, case.bidirectional,
                                                   case.bias)
    assert {name: value.shape for name, value in layer.params.items()} == shapes
    assert list(layer.grads) == list(layer.params)
    for name, value in layer.params.items():
        assert value.dtype == np.float64
        assert layer.grads[name].shape == value.shape
        assert layer.grads[name].dtype == np.float64
        assert not np.any(layer.grads[name]), f"{name}: grads start at zero"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_init_is_uniform_and_seeded(mode, dtype):
    case = Case(mode, num_layers=2, bidirectional=True, input_size=3, hidden_size=7)
    first, again, other = (make_layer(case, dtype=dtype, seed=s) for s in (3, 3, 4))
    bound = 1.0 / np.sqrt(case.hidden_size)
    assert first.dtype == dtype
    for name, value in first.params.items():
        assert value.dtype == dtype
        assert np.all(np.abs(value) <= bound), name
        assert np.ptp(value) > bound / 2, f"{name} looks constant"
        np.testing.assert_array_equal(value, again.params[name])
    assert any(not np.array_equal(first.params[n], other.params[n]) for n in first.params)
    # the biases are drawn too (not zero, not equal to each other)
    assert np.any(first.params["bias_ih_l0"] != first.params["bias_hh_l0"])


@pytest.mark.parametrize("mode", MODES)
def test_params_updated_in_place_are_used(mode, rng):
    case = Case(mode)
    layer = make_layer(case)
    inp = random_inputs(case, rng)
    before = forward(layer, case, inp["x"])[0]
    for value in layer.params.values():
        value *= 0.5  # what an optimizer does
    after = forward(layer, case, inp["x"])[0]
    expected = naive_forward(case, {k: v.copy() for k, v in layer.params.items()}, inp["x"])[0]
    np.testing.assert_allclose(after, expected, **FORWARD_TOL)
    assert not np.allclose(before, after)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("case", GRID, ids=Case.id)
def test_forward_matches_naive(case, rng):
    layer = make_layer(case)
    params = random_params(case, rng)
    set_params(layer, params)
    inp = random_inputs(case, rng)

    y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    y_ref, h_ref, c_ref = naive_forward(case, params, inp["x"], inp["h0"], inp["c0"],
                                        inp["lengths"])
    assert y.dtype == h_n.dtype == np.float64
    np.testing.assert_allclose(y, y_ref, **FORWARD_TOL)
    np.testing.assert_allclose(h_n, h_ref, **FORWARD_TOL)
    if case.is_lstm:
        assert c_n.dtype == np.float64
        np.testing.assert_allclose(c_n, c_ref, **FORWARD_TOL)

    # no initial state means zeros
    y, h_n, c_n = forward(layer, case, inp["x"], lengths=inp["lengths"])
    y_ref, h_ref, c_ref = naive_forward(case, params, inp["x"], lengths=inp["lengths"])
    np.testing.assert_allclose(y, y_ref, **FORWARD_TOL)
    np.testing.assert_allclose(h_n, h_ref, **FORWARD_TOL)
    if case.is_lstm:
        np.testing.assert_allclose(c_n, c_ref, **FORWARD_TOL)


@pytest.mark.parametrize("mode", MODES)
def test_lengths_zero_padding_and_ignore_padded_input(mode, rng):
    case = Case(mode, num_layers=2, bidirectional=True, lengths=True)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    for b, length in enumerate(inp["lengths"]):
        assert not np.any(y[length:, b]), "outputs at t >= length are zero"
    # what is in the padding does not matter
    x = inp["x"].copy()
    for b, length in enumerate(inp["lengths"]):
        x[length:, b] = rng.normal(size=x[length:, b].shape) * 100
    y2, h2, c2 = forward(layer, case, x, inp["h0"], inp["c0"], inp["lengths"])
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(h2, h_n)
    # full lengths equal no lengths
    full = np.full(case.batch, case.steps)
    y3, h3, _ = forward(layer, case, inp["x"], inp["h0"], inp["c0"], full)
    y4, h4, _ = forward(layer, case, inp["x"], inp["h0"], inp["c0"])
    np.testing.assert_allclose(y3, y4, **FORWARD_TOL)
    np.testing.assert_allclose(h3, h4, **FORWARD_TOL)


# --------------------------------------------------------------------------- gradients


def _analytic_and_numeric(layer, case, inp):
    """Backward's gradients and central differences of the scalar loss, by name."""
    x, h0, c0, lengths = inp["x"], inp["h0"], inp["c0"], inp["lengths"]
    dy, dh_n, dc_n = inp["dy"], inp["dh_n"], inp["dc_n"]

    def loss():
        y, h_n, c_n = forward(layer, case, x, h0, c0, lengths)
        return scalar_loss(y, h_n, c_n, dy, dh_n, dc_n)

    loss()
    layer.zero_grad()
    dx, dh0, dc0 = backward(layer, case, dy, dh_n, dc_n)
    analytic = {name: grad.copy() for name, grad in layer.grads.items()}
    analytic.update(x=dx.copy(), h0=dh0.copy())
    if case.is_lstm:
        analytic["c0"] = dc0.copy()

    names = list(layer.params) + list(_state_names(case)) + ["x"]
    variables = [layer.params[n] for n in layer.params] + [inp[n] for n in _state_names(case)]
    variables.append(x)
    numeric = dict(zip(names, naive.central_difference(loss, variables)))
    return analytic, numeric


@pytest.mark.parametrize("case", GRID, ids=Case.id)
def test_gradients_match_central_differences(case, rng):
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    analytic, numeric = _analytic_and_numeric(layer, case, inp)
    assert set(analytic) == set(numeric)
    for name in numeric:
        assert analytic[name].shape == numeric[name].shape, name
        np.testing.assert_allclose(analytic[name], numeric[name], err_msg=name, **GRAD_TOL)
    if case.lengths:
        dx = analytic["x"] if not case.batch_first else analytic["x"].transpose(1, 0, 2)
        for b, length in enumerate(inp["lengths"]):
            assert not np.any(dx[length:, b]), "no gradient reaches padded input"


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_backward_without_state_gradient_means_zeros(mode, rng):
    case = Case(mode, num_layers=2, bidirectional=True)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    zeros = np.zeros_like(inp["dh_n"])

    def flat(result):  # (dx, (dh0, dc0)) or (dx, dh0) -> list of arrays
        dx, dstate = result
        return [dx, *dstate] if isinstance(dstate, tuple) else [dx, dstate]

    calls = [lambda: flat(layer.backward(inp["dy"], None))]
    if case.is_lstm:
        calls += [lambda: flat(layer.backward(inp["dy"], (None, None))),
                  lambda: flat(layer.backward(inp["dy"], (zeros, None))),
                  lambda: flat(layer.backward(inp["dy"], (None, zeros)))]
    forward(layer, case, inp["x"], inp["h0"], inp["c0"])
    reference = flat(layer.backward(inp["dy"], (zeros, zeros) if case.is_lstm else zeros))
    reference_grads = {k: v.copy() for k, v in layer.grads.items()}
    for call in calls:
        layer.zero_grad()
        forward(layer, case, inp["x"], inp["h0"], inp["c0"])
        for got, want in zip(call(), reference, strict=True):
            np.testing.assert_allclose(got, want, **FORWARD_TOL)
        for name, grad in layer.grads.items():
            np.testing.assert_allclose(grad, reference_grads[name], err_msg=name, **FORWARD_TOL)


def test_lstm_backward_with_only_cell_state_gradient(rng):
    case = Case("lstm", num_layers=2)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    inp["dy"][...] = 0
    inp["dh_n"][...] = 0
    analytic, numeric = _analytic_and_numeric(layer, case, inp)
    for name in numeric:
        np.testing.assert_allclose(analytic[name], numeric[name], err_msg=name, **GRAD_TOL)
    assert np.any(analytic["x"])


@pytest.mark.parametrize("mode", MODES)
def test_grads_accumulate_and_zero_grad(mode, rng):
    case = Case(mode, num_layers=2, bidirectional=True, lengths=True)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    arrays = {name: grad for name, grad in layer.grads.items()}

    forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    dx1 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])[0]
    once = {name: grad.copy() for name, grad in layer.grads.items()}
    assert all(np.any(g) for g in once.values())

    forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
    dx2 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])[0]
    np.testing.assert_allclose(dx2, dx1, **FORWARD_TOL)  # dx is not accumulated
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, 2 * once[name], err_msg=name, **FORWARD_TOL)

    # a different forward adds its own gradient
    x_other = inp["x"] * 0.5
    forward(layer, case, x_other, inp["h0"], inp["c0"], inp["lengths"])
    layer.zero_grad()
    for name, grad in layer.grads.items():
        assert not np.any(grad), name
    backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    fresh = make_layer(case)
    set_params(fresh, layer.params)
    forward(fresh, case, x_other, inp["h0"], inp["c0"], inp["lengths"])
    backward(fresh, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, fresh.grads[name], err_msg=name, **FORWARD_TOL)
    # the same arrays all along (an optimizer may hold them)
    assert all(layer.grads[name] is arrays[name] for name in arrays)


# --------------------------------------------------------------------------- step


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bias": False, "batch_first": True},
                                     {"num_layers": 2, "input_size": 1, "hidden_size": 7}],
                         ids=["L1", "L2-nobias-batch_first", "L2-I1-H7"])
def test_step_matches_forward(mode, options, rng):
    case = Case(mode, **options)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    x = inp["x"].transpose(1, 0, 2) if case.batch_first else inp["x"]  # (T, B, I)

    for h0, c0 in ((inp["h0"], inp["c0"]), (None, None)):
        y, h_n, c_n = forward(layer, case, inp["x"], h0, c0)
        if case.batch_first:
            y = y.transpose(1, 0, 2)
        state = None if h0 is None else ((h0, c0) if case.is_lstm else h0)
        for t in range(case.steps):
            h_t, state = layer.step(x[t], state)
            assert h_t.shape == (case.batch, case.hidden_size)
            np.testing.assert_allclose(h_t, y[t], **FORWARD_TOL)
        if case.is_lstm:
            np.testing.assert_allclose(state[0], h_n, **FORWARD_TOL)
            np.testing.assert_allclose(state[1], c_n, **FORWARD_TOL)
        else:
            np.testing.assert_allclose(state, h_n, **FORWARD_TOL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_size, hidden_size, batch, num_layers, bias", [
    (1, 1, 1, 1, True), (3, 7, 3, 1, True), (17, 16, 1, 1, True), (9, 33, 2, 1, True),
    (3, 16, 2, 2, True), (5, 7, 1, 1, False), (1, 9, 3, 3, False),
])
def test_step_fast_path_matches_forward(mode, dtype, input_size, hidden_size, batch, num_layers, bias, rng):
    """After its first call, step() is one compiled call (for one layer with biases,
    or a stack or no biases): check it at sizes where its dot products run on lanes
    (I or H at least one vector, 8 or 16) and where they do not, with no fallback
    to the full path."""
    case = Case(mode, input_size=input_size, hidden_size=hidden_size, batch=batch, steps=5,
                num_layers=num_layers, bias=bias)
    layer = make_layer(case, dtype=dtype)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    x = inp["x"].astype(dtype)
    y, h_n, c_n = forward(layer, case, x, None, None)
    h_t, state = layer.step(x[0], None)
    layer._check_step_input = lambda *args: pytest.fail("step() left the fast path")
    outputs = [h_t]
    for t in range(1, case.steps):
        h_t, state = layer.step(x[t], state)
        outputs.append(h_t)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else FORWARD_TOL  # as float32 forward tests
    np.testing.assert_allclose(np.stack(outputs), y, **tol)
    final = state if case.is_lstm else (state,)
    for got, expected in zip(final, (h_n, c_n)):
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(got, expected, **tol)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_fast_path_takes_unbatched_and_strided_inputs(mode, num_layers, rng):
    """An unbatched x (I,) with (L, H) states, and a strided (B, I) x (a time
    column of a batch-first array), stay on the fast path, to the same numbers."""
    case = Case(mode, input_size=5, hidden_size=16, num_layers=num_layers)
    layer = make_layer(case, dtype=np.float32)
    x = rng.normal(size=(case.batch, 3, case.input_size)).astype(np.float32)  # batch-first
    _, state = layer.step(np.ascontiguousarray(x[:, 0]), None)
    expected, expected_state = layer.step(np.ascontiguousarray(x[:, 1]), state)
    _, single_state = layer.step(np.ascontiguousarray(x[0, 0]), None)  # (L, H) states: the full path
    layer._check_step_input = lambda *args: pytest.fail("step() left the fast path")
    got, got_state = layer.step(x[:, 1], state)
    np.testing.assert_array_equal(got, expected)
    for got_part, expected_part in zip(got_state if case.is_lstm else (got_state,),
                                       expected_state if case.is_lstm else (expected_state,)):
        np.testing.assert_array_equal(got_part, expected_part)
    got, got_state = layer.step(x[0, 1], single_state)
    assert got.shape == (case.hidden_size,)
    np.testing.assert_array_equal(got, expected[0])
    for got_part, expected_part in zip(got_state if case.is_lstm else (got_state,),
                                       expected_state if case.is_lstm else (expected_state,)):
        assert got_part.shape == (num_layers, case.hidden_size)
        np.testing.assert_array_equal(got_part, expected_part[:, 0])


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_step_calls_off_the_fast_path_give_the_same_result(mode, rng):
    """What the fast path does not take (another dtype, a strided x, an LSTM state
    as a list, an unbatched x) goes the full path, to the same numbers."""
    case = Case(mode, input_size=5, hidden_size=16)
    layer = make_layer(case, dtype=np.float32)
    x = rng.normal(size=(case.batch, case.input_size)).astype(np.float32)
    _, state = layer.step(x, None)
    expected, expected_state = layer.step(x, state)
    wide = np.asfortranarray(x.astype(np.float64))
    for x_t, state_t in ((x.astype(np.float64), state), (wide, state), (np.asfortranarray(x), state)):
        np.testing.assert_array_equal(layer.step(x_t, state_t)[0], expected)
    if case.is_lstm:
        got, got_state = layer.step(x, list(state))
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got_state[1], expected_state[1])
    single = state[0][:, 0] if case.is_lstm else state[:, 0]
    single_state = (single, state[1][:, 0]) if case.is_lstm else single
    np.testing.assert_allclose(layer.step(x[0], single_state)[0], expected[0], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- state_dict


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip(mode, rng):
    case = Case(mode, num_layers=2, bidirectional=True)
    source = make_layer(case, seed=1)
    set_params(source, random_params(case, rng))
    state = source.state_dict()
    assert list(state) == list(source.params)
    target = make_layer(case, seed=2)
    held = dict(target.params)
    target.load_state_dict(state)
    for name, value in source.params.items():
        np.testing.assert_array_equal(target.params[name], value)
        assert target.params[name] is held[name], "load_state_dict copies into the arrays"
    inp = random_inputs(case, rng)
    expected = forward(source, case, inp["x"], inp["h0"], inp["c0"])
    for name in state:
        state[name][...] = 0  # the layer holds its own copy
    got = forward(target, case, inp["x"], inp["h0"], inp["c0"])
    for a, b in zip(got, expected):
        if b is not None:
            np.testing.assert_array_equal(a, b)


def test_load_state_dict_casts_to_layer_dtype(rng):
    case = Case("lstm")
    params = random_params(case, rng)  # float64
    layer = make_layer(case, dtype=np.float32)
    layer.load_state_dict(params)
    for name, value in layer.params.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, params[name].astype(np.float32))


# --------------------------------------------------------------------------- train / eval / dropout


def _dropout_case(mode):
    return Case(mode, num_layers=3, input_size=3, hidden_size=7, batch=2)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_is_seeded_and_off_in_eval(mode, rng):
    case = _dropout_case(mode)
    params = random_params(case, rng)
    inp = random_inputs(case, rng)
    outputs = []
    for _ in range(2):
        layer = make_layer(case, seed=11, dropout=0.5)
        set_params(layer, params)
        assert layer.training
        outputs.append(forward(layer, case, inp["x"], inp["h0"], inp["c0"]))
    for a, b in zip(*outputs):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    y_train, h_train, _ = outputs[0]

    layer.eval()
    assert not layer.training
    y_ref, h_ref, c_ref = naive_forward(case, params, inp["x"], inp["h0"], inp["c0"])
    for _ in range(2):
        y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"])
        np.testing.assert_allclose(y, y_ref, **FORWARD_TOL)
        np.testing.assert_allclose(h_n, h_ref, **FORWARD_TOL)
        if case.is_lstm:
            np.testing.assert_allclose(c_n, c_ref, **FORWARD_TOL)
    # dropout acts between layers only: the first layer's final state is untouched
    np.testing.assert_allclose(h_train[0], h_ref[0], **FORWARD_TOL)
    assert not np.allclose(y_train, y_ref)

    layer.train()
    assert layer.training
    y_again = forward(layer, case, inp["x"], inp["h0"], inp["c0"])[0]
    assert not np.allclose(y_again, y_ref)


@pytest.mark.parametrize("mode", MODES)
def test_no_dropout_in_train_mode_equals_eval(mode, rng):
    case = _dropout_case(mode)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    y_train = forward(layer, case, inp["x"])[0]
    layer.eval()
    np.testing.assert_array_equal(forward(layer, case, inp["x"])[0], y_train)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_dropout_gradients_match_central_differences(mode, rng):
    """With the mask fixed by the seed (a fresh layer per evaluation), backward is exact."""
    case = Case(mode, num_layers=2, input_size=3, hidden_size=3, batch=2, steps=3)
    params = random_params(case, rng)
    inp = random_inputs(case, rng)

    def run():
        layer = make_layer(case, seed=5, dropout=0.4)
        set_params(layer, params)
        y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"])
        return layer, scalar_loss(y, h_n, c_n, inp["dy"], inp["dh_n"], inp["dc_n"])

    layer, _ = run()
    dx, dh0, dc0 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    names = list(params) + ["x", "h0"]
    variables = list(params.values()) + [inp["x"], inp["h0"]]
    numeric = naive.central_difference(lambda: run()[1], variables)
    analytic = [layer.grads[n] for n in params] + [dx, dh0]
    for name, got, want in zip(names, analytic, numeric):
        np.testing.assert_allclose(got, want, err_msg=name, **GRAD_TOL)


# --------------------------------------------------------------------------- dtype and stability


@pytest.mark.parametrize("mode", MODES)
def test_float32_layer_computes_in_float32(mode, rng):
    case = Case(mode, num_layers=2, bidirectional=True)
    params = random_params(case, rng)
    layer = make_layer(case, dtype=np.float32)
    set_params(layer, params)
    inp = random_inputs(case, rng)  # float64 input is cast
    y, h_n, c_n = forward(layer, case, inp["x"], inp["h0"], inp["c0"])
    dx, dh0, dc0 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    for array in [y, h_n, dx, dh0] + list(layer.grads.values()):
        assert array.dtype == np.float32
    y_ref, h_ref, _ = naive_forward(case, {k: v.astype(np.float32) for k, v in params.items()},
                                    inp["x"].astype(np.float32), inp["h0"].astype(np.float32),
                                    None if c_n is None else inp["c0"].astype(np.float32))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_n, h_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_float32_backward_on_lanes_matches_float64(mode, rng):
    """At H = 33 the float32 pointwise passes run on SIMD lanes (16 units at a time, the
    33rd alone): forward, every gradient and dx agree with the float64 layer (whose
    passes are scalar) to float32 accuracy, with lengths so some rows sit out steps."""
    case = Case(mode, bidirectional=True, lengths=True, input_size=5, hidden_size=33, steps=4)
    params = random_params(case, rng)
    inp = random_inputs(case, rng)
    results = []
    for dtype in (np.float32, np.float64):
        layer = make_layer(case, dtype=dtype)
        set_params(layer, params)
        outputs = forward(layer, case, inp["x"], inp["h0"], inp["c0"], inp["lengths"])
        grads = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
        results.append([a for a in outputs + grads if a is not None] + [layer.grads[n] for n in sorted(layer.grads)])
    for got, want in zip(*results):
        assert got.dtype == np.float32
        assert_rel_close(got, want, 2e-4)


@pytest.mark.parametrize("mode", ["lstm", "gru", "gru_cho", "rnn_tanh"])
@pytest.mark.parametrize("dtype, magnitude", [(np.float32, 1e30), (np.float64, 1e300)],
                         ids=["float32", "float64"])
def test_huge_inputs_give_finite_results_without_warnings(mode, dtype, magnitude, rng):
    case = Case(mode, num_layers=2, bidirectional=True)
    layer = make_layer(case, dtype=dtype)
    inp = random_inputs(case, rng, dtype=dtype)
    x = np.where(rng.random(inp["x"].shape) < 0.5, -magnitude, magnitude).astype(dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y, h_n, c_n = forward(layer, case, x, inp["h0"], inp["c0"])
        dx, dh0, dc0 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    for array in [y, h_n, dx, dh0] + ([c_n, dc0] if case.is_lstm else []):
        assert np.all(np.isfinite(array))
    for name, grad in layer.grads.items():
        assert np.all(np.isfinite(grad)), name


# --------------------------------------------------------------------------- aliasing


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("changed", ["inputs", "outputs"])
def test_backward_unaffected_by_caller_changing_arrays_after_forward(mode, changed, rng):
    """backward differentiates the forward call as it was, even if the caller reuses
    the input buffers (x, h0, c0) or changes the returned outputs in place before
    backward.  (PyTorch raises on such a change; silently wrong gradients are worse.)"""
    case = Case(mode, num_layers=2)
    params = random_params(case, rng)
    inp = random_inputs(case, rng)

    reference = make_layer(case)
    set_params(reference, params)
    forward(reference, case, inp["x"].copy(), inp["h0"].copy(),
            None if inp["c0"] is None else inp["c0"].copy())
    want = backward(reference, case, inp["dy"], inp["dh_n"], inp["dc_n"])

    layer = make_layer(case)
    set_params(layer, params)
    x, h0 = inp["x"].copy(), inp["h0"].copy()
    c0 = None if inp["c0"] is None else inp["c0"].copy()
    outputs = forward(layer, case, x, h0, c0)
    for array in (x, h0, c0) if changed == "inputs" else outputs:
        if array is not None:
            array[...] = 7.0  # a data loader refilling its buffer, an in-place activation
    got = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    for a, b in zip(got, want):
        if b is not None:
            np.testing.assert_allclose(a, b, **FORWARD_TOL)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, reference.grads[name], err_msg=name, **FORWARD_TOL)


def test_reset_parameters_keeps_the_arrays(rng):
    """reset_parameters redraws in place, so an optimizer holding the arrays keeps working."""
    layer = make_layer(Case("lstm", num_layers=2), seed=0)
    params, grads = dict(layer.params), dict(layer.grads)
    before = {k: v.copy() for k, v in params.items()}
    layer.reset_parameters(seed=1)
    for name in params:
        assert layer.params[name] is params[name], name
        assert layer.grads[name] is grads[name], name
        assert not np.array_equal(layer.params[name], before[name]), name


# ----------------------------------------------------------------- NaN in, NaN out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_weight_gives_nan_outputs_in_the_kernels(mode, dtype, rng):
    """The float32 ``tanh`` clamped with ``max(-C, min(x, C))``, which turned NaN into -C: a NaN
    weight gave clean-looking outputs (tanh(NaN) = -0.99999976, sigmoid(NaN) = 1.2e-7), and
    ``relu(NaN)`` gave 0.  The kernels (called here directly, below the layer's own check of
    ``params``) must carry NaN through: unit 0 at the first step, every unit after it."""
    case = Case(mode, input_size=3, hidden_size=19, steps=4, batch=5)
    layer = make_layer(case, dtype=dtype)
    weights = list(layer._weights(0, 0))
    weights[0] = weights[0].copy()
    weights[0][0, 1] = np.nan  # row 0: unit 0 of the first gate
    x = rng.normal(size=(case.steps, case.batch, case.input_size)).astype(dtype)
    state0 = tuple(np.zeros((case.batch, case.hidden_size), dtype) for _ in range(2 if case.is_lstm else 1))
    y = np.zeros((case.steps, case.batch, case.hidden_size), dtype)
    lengths = np.full(case.batch, case.steps, dtype=np.int64)
    with layer._compute_context():
        layer._backend.layer_forward(layer.cell, x, lengths, False, tuple(weights), state0, y, workspace={})
    assert np.isnan(y[0, :, 0]).all()
    assert np.isnan(y[1:]).all()


def test_nan_weight_is_refused_by_the_layer(rng):
    layer = make_layer(Case("lstm"), dtype=np.float32)
    layer.params["weight_hh_l0"][1, 2] = np.nan
    with pytest.raises(ValueError, match=r"params\['weight_hh_l0'\] contains NaN"):
        layer(rng.normal(size=(4, 3, 3)))


# ----------------------------------------------------------------- same bits for any thread count

_THREADS_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import numrnn

rng = np.random.default_rng(0)
digests = {}
for cls, options in ((numrnn.RNN, {}), (numrnn.RNN, {"nonlinearity": "relu"}), (numrnn.LSTM, {}),
                     (numrnn.GRU, {}), (numrnn.GRU, {"reset_after": False})):
    for dtype in (np.float32, np.float64):
        for steps, batch, features, hidden in ((7, 5, 3, 6), (6, 13, 5, 33)):
            layer = cls(features, hidden, num_layers=2, bidirectional=True, dtype=dtype, seed=1,
                        backend="cpu", **options)
            x = rng.normal(size=(steps, batch, features))
            y, _ = layer(x, lengths=rng.integers(1, steps + 1, size=batch))
            dx, _ = layer.backward(rng.normal(size=y.shape))
            arrays = {"y": y, "dx": dx, **layer.grads}
            key = f"{cls.__name__}{options}{dtype.__name__}{batch}"
            digests[key] = {name: hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()
                            for name, a in arrays.items()}
print(json.dumps(digests))
"""


def _run_digests(script, **env):
    """Run ``script`` in a child Python with ``env`` added; return the JSON it prints last."""
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **env), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_results_are_the_same_bits_for_any_thread_count():
    """Every reduction's order depends on the shapes only: forward outputs, ``dx`` and every
    gradient are the same bits with 1, 2 and 3 Numba threads (the recurrent ``dW_hh`` of the
    RNN, and small layers whose per-step products went to BLAS with a row count that followed
    the thread count, used to differ by up to 3e-7 relative in float32)."""
    import json
    import os
    import subprocess
    import sys

    def run(threads):
        return _run_digests(_THREADS_SCRIPT, NUMBA_NUM_THREADS=str(threads))

    results = {threads: run(threads) for threads in (1, 2, 3)}
    for key, digests in results[1].items():
        for threads in (2, 3):
            different = [name for name in digests if results[threads][key][name] != digests[name]]
            assert not different, f"{key}: {different} differ between 1 and {threads} threads"


_GRU_SCRIPT = r"""
import hashlib, json
import numpy as np
import numrnn

rng = np.random.default_rng(0)
digests = {}
for reset_after in (True, False):
    layer = numrnn.GRU(3, 6, num_layers=2, bidirectional=True, reset_after=reset_after,
                       dtype=np.float64, seed=1, backend="cpu")
    x = rng.normal(size=(7, 5, 3))
    y, _ = layer(x, lengths=[7, 1, 4, 6, 2])
    dx, _ = layer.backward(rng.normal(size=y.shape))
    for name, a in {"y": y, "dx": dx, **layer.grads}.items():
        digests[f"{reset_after}-{name}"] = hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()
print(json.dumps(digests))
"""


def test_results_do_not_depend_on_the_kernel_cache():
    """Kernels compiled in the running process and kernels loaded from Numba's cache give the
    same bits.  With the fast-math flags ``reassoc`` and ``nsz`` together, the GRU's backward
    loaded from the cache differed in the last bit (1e-16 relative) from the same kernel freshly
    compiled, so a first run on an empty cache and the runs after it disagreed."""
    cached = _run_digests(_GRU_SCRIPT)  # loads what the suite compiled (or compiles, then caches)
    fresh = _run_digests(_GRU_SCRIPT, NUMRNN_NO_CACHE="1")  # compiles in the child, no cache
    different = sorted(key for key in cached if cached[key] != fresh[key])
    assert not different, f"cached and freshly compiled kernels differ: {different}"
