"""Bad input is refused at the border with a clear error, and leaves the layer as it was.

Every failing call must raise ``ValueError`` / ``TypeError`` (``RuntimeError`` for
backward before forward) whose message names the offending argument, and must leave
the layer unchanged: parameters (values and the array objects), gradients, mode, and
the state saved by the previous forward, so a following ``backward`` still gives the
previous forward's gradients.  Lists, integer arrays, non-contiguous and other-dtype
arrays are accepted and give the same results as clean arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

import numrnn
from helpers import (
    MODES,
    Case,
    backward,
    forward,
    make_layer,
    random_inputs,
    random_params,
    set_params,
)

FORWARD_TOL = dict(rtol=1e-12, atol=1e-12)
SHAPE_OR_TYPE = (ValueError, TypeError)

CASES = [
    Case("lstm", num_layers=2, bidirectional=True, lengths=True),
    Case("gru", num_layers=2, lengths=True),
    Case("rnn_tanh", bidirectional=True, batch_first=True, lengths=True),
]


class Prepared:
    """A layer after forward (+ one backward, so gradients are non-zero) and a twin
    layer's reference results for the same forward."""

    def __init__(self, case, seed=0):
        rng = np.random.default_rng(seed)
        self.case = case
        self.params = random_params(case, rng)
        self.inp = random_inputs(case, rng)
        self.layer = self._run_layer()
        twin = self._run_layer()
        self.ref_dx, self.ref_dh0, self.ref_dc0 = self._backward(twin)
        self.ref_grads = {k: v.copy() for k, v in twin.grads.items()}
        self._backward(self.layer)  # non-zero gradients before the failing call
        forward(self.layer, case, self.inp["x"], self.inp["h0"], self.inp["c0"],
                self.inp["lengths"])
        self.y_shape = self.inp["dy"].shape

    def _run_layer(self):
        layer = make_layer(self.case)
        set_params(layer, self.params)
        forward(layer, self.case, self.inp["x"], self.inp["h0"], self.inp["c0"],
                self.inp["lengths"])
        return layer

    def _backward(self, layer):
        return backward(layer, self.case, self.inp["dy"], self.inp["dh_n"], self.inp["dc_n"])

    def assert_fails_cleanly(self, call, exc, match):
        layer = self.layer
        params = {k: (v, v.copy()) for k, v in layer.params.items()}
        grads = {k: (v, v.copy()) for k, v in layer.grads.items()}
        training = layer.training
        with pytest.raises(exc, match=match):
            call(layer)
        assert layer.training == training
        assert list(layer.params) == list(params) and list(layer.grads) == list(grads)
        for name, (array, copy) in params.items():
            assert layer.params[name] is array, f"params[{name!r}] replaced"
            np.testing.assert_array_equal(array, copy, err_msg=f"params[{name!r}] changed")
        for name, (array, copy) in grads.items():
            np.testing.assert_array_equal(layer.grads[name], copy,
                                          err_msg=f"grads[{name!r}] changed")
        # the previous forward is still what backward differentiates
        dx, dh0, dc0 = self._backward(layer)
        np.testing.assert_allclose(dx, self.ref_dx, **FORWARD_TOL)
        np.testing.assert_allclose(dh0, self.ref_dh0, **FORWARD_TOL)
        if self.case.is_lstm:
            np.testing.assert_allclose(dc0, self.ref_dc0, **FORWARD_TOL)
        for name, grad in layer.grads.items():
            np.testing.assert_allclose(grad, 2 * self.ref_grads[name], err_msg=name,
                                       **FORWARD_TOL)


def _bad_forward_calls(p):
    """(id, call, exception, message pattern) for forward with one bad argument."""
    case, inp = p.case, p.inp
    x, h0, c0, lengths = inp["x"], inp["h0"], inp["c0"], inp["lengths"]
    steps, batch = case.steps, case.batch

    def fwd(x=x, h0=h0, c0=c0, lengths=lengths, state=None, use_state=False):
        def call(layer):
            st = state if use_state else ((h0, c0) if case.is_lstm else h0)
            return layer(x, st, lengths=lengths)
        return call

    bad_x = {
        "x-1d": x[0, 0],
        "x-4d": x[None],
        "x-features": np.concatenate([x, x[..., :1]], axis=-1),
        "x-nan": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x),
        "x-inf": np.where(np.arange(x.size).reshape(x.shape) == 2, -np.inf, x),
        "x-complex": x + 1j,
        "x-strings": np.full(x.shape, "a"),
        "x-object": x.astype(object),
        "x-None": None,
        "x-ragged": [[[1.0, 2.0, 3.0]], [[1.0]]],
    }
    type_errors = {"x-complex", "x-strings", "x-object", "x-None"}
    calls = [(name, fwd(x=value), TypeError if name in type_errors else SHAPE_OR_TYPE,
              r"\bx\b") for name, value in bad_x.items()]
    time_axis = 1 if case.batch_first else 0
    calls.append(("x-T0", fwd(x=np.take(x, [], axis=time_axis), lengths=None), ValueError,
                  r"\bx\b|length|timestep"))
    calls.append(("x-B0", fwd(x=np.take(x, [], axis=1 - time_axis), lengths=None,
                              use_state=True), ValueError, r"\bx\b|batch"))

    state_name = r"state|h0|hx"
    bad_h = {
        "state-layers": h0[:-1],
        "state-batch": h0[:, :-1],
        "state-hidden": h0[..., :-1],
        "state-ndim": h0[0],
        "state-nan": h0 * np.nan,
    }
    for name, value in bad_h.items():
        calls.append((name, fwd(h0=value), ValueError, state_name))
    if case.is_lstm:
        calls += [
            ("lstm-state-single-array", fwd(state=h0, use_state=True), SHAPE_OR_TYPE, state_name),
            ("lstm-state-triple", fwd(state=(h0, c0, c0), use_state=True), SHAPE_OR_TYPE,
             state_name),
            ("lstm-c0-shape", fwd(c0=c0[:, :1]), ValueError, r"state|c0|cx"),
            ("lstm-c0-complex", fwd(c0=c0 * 1j), TypeError, r"state|c0|cx"),
        ]
    else:
        calls.append(("state-pair", fwd(state=(h0, h0), use_state=True), SHAPE_OR_TYPE,
                      state_name))
        calls.append(("state-complex", fwd(h0=h0 + 0j), TypeError, state_name))

    bad_lengths = {
        "lengths-zero": [0] + [steps] * (batch - 1),
        "lengths-negative": [-1] + [steps] * (batch - 1),
        "lengths-too-long": [steps + 1] + [steps] * (batch - 1),
        "lengths-count-short": [steps] * (batch - 1),
        "lengths-count-long": [steps] * (batch + 1),
        "lengths-2d": [[steps] * batch],
        "lengths-fraction": [1.5] + [steps] * (batch - 1),
        "lengths-strings": ["a"] * batch,
        "lengths-complex": [steps + 0j] * batch,
    }
    for name, value in bad_lengths.items():
        calls.append((name, fwd(lengths=value), SHAPE_OR_TYPE, "lengths"))
    return calls


def _bad_backward_calls(p):
    case, inp = p.case, p.inp
    dy, dh_n, dc_n = inp["dy"], inp["dh_n"], inp["dc_n"]

    def bwd(dy=dy, dstate="default"):
        def call(layer):
            if isinstance(dstate, str):
                return layer.backward(dy, (dh_n, dc_n) if case.is_lstm else dh_n)
            return layer.backward(dy, dstate)
        return call

    calls = [
        ("dy-steps", bwd(dy=np.take(dy, range(case.steps - 1), axis=int(case.batch_first))),
         ValueError, r"\bdy\b"),
        ("dy-features", bwd(dy=dy[..., :-1]), ValueError, r"\bdy\b"),
        ("dy-transposed", bwd(dy=dy.transpose(1, 0, 2)), ValueError, r"\bdy\b"),
        ("dy-ndim", bwd(dy=dy[None]), ValueError, r"\bdy\b"),
        ("dy-2d", bwd(dy=dy[:, 0]), ValueError, r"\bdy\b"),
        ("dy-nan", bwd(dy=dy * np.nan), ValueError, r"\bdy\b"),
        ("dy-complex", bwd(dy=dy + 1j), TypeError, r"\bdy\b"),
        ("dy-None", bwd(dy=None), TypeError, r"\bdy\b"),
        ("dstate-shape", bwd(dstate=(dh_n[:, :1], dc_n) if case.is_lstm else dh_n[:, :1]),
         ValueError, r"dstate|dh_n|dh"),
        ("dstate-nan", bwd(dstate=(dh_n * np.nan, dc_n) if case.is_lstm else dh_n * np.nan),
         ValueError, r"dstate|dh_n|dh"),
    ]
    if case.is_lstm:
        calls += [
            ("lstm-dstate-single", bwd(dstate=dh_n), SHAPE_OR_TYPE, r"dstate|dh_n"),
            ("lstm-dc_n-shape", bwd(dstate=(dh_n, dc_n[..., :1])), ValueError,
             r"dstate|dc_n|dc"),
        ]
    else:
        calls.append(("dstate-pair", bwd(dstate=(dh_n, dh_n)), SHAPE_OR_TYPE, r"dstate|dh_n"))
    return calls


def _bad_other_calls(p):
    case = p.case
    state = p.layer.state_dict()
    first = next(iter(state))
    missing = {k: v for k, v in state.items() if k != first}
    unexpected = dict(state, weight_ih_l9=state[first])
    wrong_shape = dict(state, **{first: state[first][:, :-1]})
    calls = [
        ("load-missing", lambda layer: layer.load_state_dict(missing), ValueError, first),
        ("load-unexpected", lambda layer: layer.load_state_dict(unexpected), ValueError,
         "weight_ih_l9"),
        ("load-wrong-shape", lambda layer: layer.load_state_dict(wrong_shape), ValueError,
         first),
        ("load-nan", lambda layer: layer.load_state_dict(dict(state, **{first: state[first]
                                                                         * np.nan})),
         ValueError, first),
        ("load-not-a-dict", lambda layer: layer.load_state_dict(list(state.values())),
         TypeError, "state_dict"),
        ("train-not-bool", lambda layer: layer.train("no"), TypeError, "mode"),
    ]
    if case.bidirectional:
        calls.append(("step-bidirectional",
                      lambda layer: layer.step(p.inp["x"][0] if not case.batch_first
                                               else p.inp["x"][:, 0]),
                      (ValueError, RuntimeError), "bidirectional"))
    return calls


def _all_calls():
    out = []
    for case in CASES:
        p = Prepared(case)
        for name, call, exc, match in (_bad_forward_calls(p) + _bad_backward_calls(p)
                                       + _bad_other_calls(p)):
            out.append(pytest.param(case, name, exc, match, id=f"{case.mode}-{name}"))
    return out


@pytest.mark.parametrize("case, call_name, exc, match", _all_calls())
def test_bad_call_raises_and_leaves_layer_unchanged(case, call_name, exc, match):
    prepared = Prepared(case)
    calls = {name: call for name, call, _, _ in (_bad_forward_calls(prepared)
                                                 + _bad_backward_calls(prepared)
                                                 + _bad_other_calls(prepared))}
    prepared.assert_fails_cleanly(calls[call_name], exc, match)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_relu"])
def test_bad_step_calls(mode, rng):
    case = Case(mode, num_layers=2)
    layer = make_layer(case)
    x = rng.normal(size=(case.batch, case.input_size))
    h = np.zeros((case.num_layers, case.batch, case.hidden_size))
    good_state = (h, h) if case.is_lstm else h
    with pytest.raises(ValueError, match="x_t|x"):
        layer.step(x[:, :-1], good_state)
    with pytest.raises(ValueError, match="x_t|x"):
        layer.step(x[None], good_state)
    with pytest.raises(ValueError, match="x_t|x"):
        layer.step(x * np.nan, good_state)
    with pytest.raises(ValueError, match="state|h"):
        layer.step(x, (h[:1], h) if case.is_lstm else h[:1])
    with pytest.raises(SHAPE_OR_TYPE, match="state"):
        layer.step(x, h if case.is_lstm else (h, h))
    h_t, _ = layer.step(x, good_state)  # still fine
    assert h_t.shape == (case.batch, case.hidden_size)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("layout", [{}, {"num_layers": 2}, {"bias": False}], ids=["L1", "L2", "nobias"])
def test_bad_step_calls_on_the_fast_path(mode, layout, rng):
    """step()'s fast path checks in one compiled call; failures still name the argument."""
    case = Case(mode, **layout)
    layer = make_layer(case, dtype=np.float32)
    x = rng.normal(size=(case.batch, case.input_size)).astype(np.float32)
    _, state = layer.step(x, None)  # a state as the hot path accepts it
    parts = state if case.is_lstm else (state,)
    before = {name: value.copy() for name, value in layer.params.items()}

    def with_part(index, value):
        new = list(parts)
        new[index] = value
        return tuple(new) if case.is_lstm else new[0]

    with pytest.raises(ValueError, match="x_t"):
        layer.step(x * np.float32(np.nan), state)
    for index in range(len(parts)):
        bad = parts[index].copy()
        bad[0, 0, 0] = np.inf
        with pytest.raises(ValueError, match="state"):
            layer.step(x, with_part(index, bad))
        with pytest.raises(ValueError, match="state"):
            layer.step(x, with_part(index, parts[index][:, :1].copy()))  # wrong batch
        with pytest.raises(ValueError, match="state"):
            layer.step(x, with_part(index, np.zeros((1, case.batch, case.hidden_size + 1), np.float32)))
        with pytest.raises(ValueError, match="state"):  # one layer too many
            layer.step(x, with_part(index, np.zeros((case.num_layers + 1, case.batch, case.hidden_size), np.float32)))
    with pytest.raises(ValueError, match="state"):
        layer.step(x[:1], state)  # the state is for another batch size
    # a float64 state is cast, as everywhere: same result as the float32 one
    wide = tuple(p.astype(np.float64) for p in parts) if case.is_lstm else parts[0].astype(np.float64)
    np.testing.assert_array_equal(layer.step(x, wide)[0], layer.step(x, state)[0])
    assert all(np.array_equal(before[name], value) for name, value in layer.params.items())


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_backward_before_forward_is_runtime_error(mode):
    case = Case(mode)
    layer = make_layer(case)
    dy = np.zeros((case.steps, case.batch, case.hidden_size))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(dy)
    assert all(not np.any(g) for g in layer.grads.values())


@pytest.mark.parametrize("mode", MODES)
def test_second_backward_for_one_forward_is_runtime_error(mode, rng):
    """Each forward supports one backward (the kernels may consume what forward saved)."""
    case = Case(mode, lengths=True)
    layer = make_layer(case)
    y = layer(rng.normal(size=(case.steps, case.batch, case.input_size)), lengths=[case.steps] + [1] * (case.batch - 1))[0]
    layer.backward(np.ones_like(y))
    once = {name: grad.copy() for name, grad in layer.grads.items()}
    with pytest.raises(RuntimeError, match="already ran for the last forward.*one backward"):
        layer.backward(np.ones_like(y))
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, once[name])


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(input_size=0), ValueError, "input_size"),
        (dict(input_size=-3), ValueError, "input_size"),
        (dict(input_size=2.5), SHAPE_OR_TYPE, "input_size"),
        (dict(input_size="3"), SHAPE_OR_TYPE, "input_size"),
        (dict(hidden_size=0), ValueError, "hidden_size"),
        (dict(hidden_size=None), SHAPE_OR_TYPE, "hidden_size"),
        (dict(num_layers=0), ValueError, "num_layers"),
        (dict(dropout=-0.1), ValueError, "dropout"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(dropout=1.5), ValueError, "dropout"),
        (dict(dropout=float("nan")), ValueError, "dropout"),
        (dict(dropout="0.5"), SHAPE_OR_TYPE, "dropout"),
        (dict(backend="gpu"), ValueError, "backend"),
        (dict(backend=None), SHAPE_OR_TYPE, "backend"),
        (dict(dtype=np.int32), SHAPE_OR_TYPE, "dtype"),
        (dict(dtype=np.float16), SHAPE_OR_TYPE, "dtype"),
        (dict(dtype=np.complex128), SHAPE_OR_TYPE, "dtype"),
        (dict(dtype="banana"), SHAPE_OR_TYPE, "dtype"),
        (dict(bias="yes"), SHAPE_OR_TYPE, "bias"),
        (dict(bidirectional=1.0), SHAPE_OR_TYPE, "bidirectional"),
        (dict(batch_first="no"), SHAPE_OR_TYPE, "batch_first"),
        (dict(seed=1.5), SHAPE_OR_TYPE, "seed"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__,
)
def test_bad_constructor_arguments(cls, kwargs, exc, match):
    args = dict(input_size=3, hidden_size=3) | kwargs
    with pytest.raises(exc, match=match):
        getattr(numrnn, cls)(**args)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        ("RNN", dict(nonlinearity="sigmoid"), "nonlinearity"),
        ("RNN", dict(nonlinearity=None), "nonlinearity"),
        ("GRU", dict(reset_after="yes"), "reset_after"),
    ],
)
def test_bad_cell_specific_arguments(cls, kwargs, match):
    with pytest.raises(SHAPE_OR_TYPE, match=match):
        getattr(numrnn, cls)(3, 3, **kwargs)


# --------------------------------------------------------------------------- accepted input


@pytest.mark.parametrize("case", CASES + [Case("gru", bidirectional=True),
                                          Case("rnn_relu", num_layers=2),
                                          Case("lstm", unbatched=True, num_layers=2)],
                         ids=Case.id)
def test_lists_int_noncontiguous_and_other_dtypes_are_accepted(case, rng):
    params = random_params(case, rng)
    inp = random_inputs(case, rng)
    inp["x"] = np.round(inp["x"] * 3)  # integral, so the int variant is the same input
    layer = make_layer(case)
    set_params(layer, params)
    x, h0, c0, lengths = inp["x"], inp["h0"], inp["c0"], inp["lengths"]
    dy, dh_n, dc_n = inp["dy"], inp["dh_n"], inp["dc_n"]

    def run(x, h0, c0, lengths, dy, dh_n, dc_n):
        out = forward(layer, case, x, h0, c0, lengths)
        layer.zero_grad()
        grads = backward(layer, case, dy, dh_n, dc_n)
        return [a for a in out + grads if a is not None] + [g.copy() for g in layer.grads.values()]

    def noncontiguous(a):
        if a is None:
            return None
        wide = np.zeros(a.shape + (2,), order="F")
        wide[..., 1] = a
        view = wide[..., 1]
        assert not view.flags.c_contiguous
        return view

    def as_list(a):
        return None if a is None else a.tolist()

    def as_float32(a):
        return None if a is None else a.astype(np.float32).astype(np.float64)

    reference = run(x, h0, c0, lengths, dy, dh_n, dc_n)
    lengths_list = None if lengths is None else list(lengths)
    variants = {
        "lists": (as_list(x), as_list(h0), as_list(c0), lengths_list, as_list(dy),
                  as_list(dh_n), as_list(dc_n)),
        "int-x": (x.astype(np.int64), h0, c0,
                  None if lengths is None else lengths.astype(np.int32), dy, dh_n, dc_n),
        "noncontiguous": tuple(noncontiguous(a) for a in (x, h0, c0)) + (
            None if lengths is None else np.repeat(lengths, 2)[::2],) + tuple(
            noncontiguous(a) for a in (dy, dh_n, dc_n)),
    }
    # float32 arrays into a float64 layer are cast (the values are those of the float32)
    args32 = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in (x, h0, c0, lengths, dy, dh_n, dc_n)]
    args64 = [as_float32(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in (x, h0, c0, lengths, dy, dh_n, dc_n)]
    for got, want in zip(run(*args32), run(*args64), strict=True):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, err_msg="float32 input", **FORWARD_TOL)
    for name in ("int-x", "noncontiguous", "lists"):
        for got, want in zip(run(*variants[name]), reference, strict=True):
            np.testing.assert_allclose(got, want, err_msg=name, **FORWARD_TOL)


@pytest.mark.parametrize("mode", ["gru", "rnn_tanh", "lstm"])
def test_state_as_nested_lists_with_two_layer_directions(mode, rng):
    """A state with L*D == 2 given as nested lists is one array, not a pair."""
    case = Case(mode, num_layers=2)
    layer = make_layer(case)
    inp = random_inputs(case, rng)
    want = forward(layer, case, inp["x"], inp["h0"], inp["c0"])
    got = forward(layer, case, inp["x"], inp["h0"].tolist(),
                  None if inp["c0"] is None else inp["c0"].tolist())
    for a, b in zip(got, want):
        if b is not None:
            np.testing.assert_allclose(a, b, **FORWARD_TOL)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dy_must_have_the_shape_of_y_for_a_batch_of_one(mode):
    """A batched forward with B = 1 wants a 3-D dy; an unbatched one a 2-D dy."""
    batched = Prepared(Case(mode, batch=1))
    dy = batched.inp["dy"]
    batched.assert_fails_cleanly(lambda layer: layer.backward(dy[:, 0]), ValueError, r"\bdy\b")
    unbatched = Prepared(Case(mode, unbatched=True))
    dy = unbatched.inp["dy"]
    unbatched.assert_fails_cleanly(lambda layer: layer.backward(dy[:, None]), ValueError,
                                   r"\bdy\b")


# ----------------------------------------------------------------- values that must not slip through


def _state_with(layer, state, part, index, value):
    """A copy of ``state`` with element ``index`` of part ``part`` (0 = h, 1 = c) set to ``value``."""
    parts = [np.array(p, copy=True) for p in (state if isinstance(state, tuple) else (state,))]
    parts[part].flat[index] = value
    return tuple(parts) if isinstance(state, tuple) else parts[0]


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_refuses_nan_and_inf_at_every_position(mode, dtype, num_layers, rng):
    """The fast path's finiteness scan once summed ``v - v``, which fast-math folded: a NaN
    past index 0 of ``x_t``, or an inf in a GRU state or an LSTM ``c``, went through and came
    out as finite numbers.  Every position of ``x_t`` and of each state part is tried."""
    case = Case(mode, num_layers=num_layers, input_size=5, hidden_size=4, batch=3)
    layer = make_layer(case, dtype=dtype)
    x = rng.normal(size=(case.batch, case.input_size)).astype(dtype)
    _, state = layer.step(x)
    _, state = layer.step(x, state)  # the second call is on the fast path
    assert layer._step_plan is not None
    for bad in (np.nan, np.inf, -np.inf):
        for index in range(x.size):
            x_bad = x.copy()
            x_bad.flat[index] = bad
            with pytest.raises(ValueError, match="x_t"):
                layer.step(x_bad, state)
        for part in range(2 if case.is_lstm else 1):
            for index in range(num_layers * case.batch * case.hidden_size):
                with pytest.raises(ValueError, match="state"):
                    layer.step(x, _state_with(layer, state, part, index, bad))


def _replacements(layer, name):
    """(label, value) pairs that must be refused in place of ``layer.params[name]``."""
    good = layer.params[name]
    other = np.float64 if layer.dtype == np.float32 else np.float32
    strided = np.asfortranarray(good) if good.ndim == 2 else np.repeat(good, 2)[::2]
    assert not strided.flags.c_contiguous and np.array_equal(strided, good)
    nan = good.copy()
    nan.flat[good.size // 2] = np.nan
    return [
        ("shape", np.zeros(good.shape[:-1] + (good.shape[-1] + 1,), dtype=layer.dtype)),
        ("dtype", good.astype(other)),
        ("int", good.astype(np.int64)),
        ("layout", strided),
        ("nan", nan),
        ("list", good.tolist()),
    ]


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["weight_ih_l0", "weight_hh_l1", "bias_hh_l0"])
def test_replaced_params_are_checked_at_each_call(mode, dtype, name, rng):
    """A replaced ``params`` entry of the wrong shape, dtype, layout or with NaN gets an error
    naming it from forward and step (it used to give wrong numbers, an AssertionError, a Numba
    TypingError in forward, or one in backward for a Fortran-ordered array), and a failed forward
    leaves the previous forward's backward intact."""
    case = Case(mode, num_layers=2, input_size=3, hidden_size=4)
    layer = make_layer(case, dtype=dtype)
    twin = make_layer(case, dtype=dtype)
    x = rng.normal(size=(case.steps, case.batch, case.input_size))
    y = layer(x)[0]
    twin(x)
    good = layer.params[name]
    for label, bad in _replacements(layer, name):
        layer.params[name] = bad
        for call in (lambda: layer(x), lambda: layer.step(x[0])):
            with pytest.raises((ValueError, TypeError), match=rf"params\['{name}'\]"):
                call()
    del layer.params[name]
    with pytest.raises(ValueError, match=name):
        layer(x)
    layer.params[name] = good
    dx = layer.backward(np.ones_like(y))[0]  # the forward before the failures is still there
    np.testing.assert_array_equal(dx, twin.backward(np.ones_like(y))[0])


@pytest.mark.parametrize("make", [lambda: np.ma.masked_array(np.ones((4, 3, 3)), mask=False),
                                  lambda: np.ma.masked_invalid(np.ones((4, 3, 3)))])
def test_masked_arrays_are_refused(make):
    """A masked array's mask would be dropped without a word: it is refused instead."""
    layer = make_layer(Case("lstm"))
    with pytest.raises(TypeError, match="masked"):
        layer(make())
    with pytest.raises(TypeError, match="masked"):
        layer.step(make()[0])


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), (2**63, ValueError), (1.0, TypeError),
                                       (True, TypeError), ("0", TypeError)])
def test_seed_errors_name_seed(seed, exc):
    with pytest.raises(exc, match="seed"):
        numrnn.LSTM(2, 4, seed=seed)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_seed_none_records_the_seed_drawn(mode):
    """``seed=None`` draws a seed and records it, so the saved config rebuilds the same weights;
    ``reset_parameters(seed)`` gives the weights of a new layer with that seed."""
    layer = make_layer(Case(mode, num_layers=2), seed=None, dropout=0.5)
    config = layer.config()
    assert isinstance(config["seed"], int) and config["seed"] == layer.seed
    rebuilt = type(layer)(**config)
    for name, value in layer.params.items():
        np.testing.assert_array_equal(rebuilt.params[name], value)
    layer.reset_parameters(seed=7)
    assert layer.config()["seed"] == 7
    fresh = type(layer)(**layer.config())
    for name, value in layer.params.items():
        np.testing.assert_array_equal(fresh.params[name], value)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_a_layer_in_use_by_another_thread_refuses(mode, rng):
    """A layer is not thread-safe: a call while another thread is inside forward or backward
    raises instead of mixing the two calls' saved state (558 of 600 shared calls were wrong)."""
    import threading

    case = Case(mode)
    layer = make_layer(case)
    x = rng.normal(size=(case.steps, case.batch, case.input_size))
    y = layer(x)[0]
    assert layer._in_use.acquire()  # as another thread inside forward would hold it
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            layer(x)
        with pytest.raises(RuntimeError, match="another thread"):
            layer.backward(np.ones_like(y))
        layer.step(x[0])  # step saves nothing and may be shared
    finally:
        layer._in_use.release()
    expected = layer(x)[0]

    # real threads: every call either raises that error or gives the right numbers
    wrong, refused = [], []

    def work():
        for _ in range(100):
            try:
                out = layer(x)[0]
            except RuntimeError as exc:
                refused.append(str(exc))
                continue
            if not np.array_equal(out, expected):
                wrong.append(out)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert all("another thread" in message for message in refused)
    import copy

    twin = copy.deepcopy(layer)  # a copy gets its own lock
    assert twin._in_use is not layer._in_use
    np.testing.assert_array_equal(twin(x)[0], expected)


def test_a_forward_under_no_grad_saves_nothing_for_backward(rng):
    """As every Module: the same outputs inside ``nn.no_grad()``, and a backward after such a
    forward raises (nothing was saved) instead of reusing an older forward."""
    layer = numrnn.LSTM(3, 4, seed=0, dtype=np.float64, backend="cpu")
    x = rng.normal(size=(5, 2, 3))
    y, (h_n, c_n) = layer(x)
    with numrnn.nn.no_grad():
        y_no_grad, (h_no_grad, c_no_grad) = layer(x)
    np.testing.assert_array_equal(y_no_grad, y)
    np.testing.assert_array_equal(c_no_grad, c_n)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(y))
    layer(x)
    dx, _ = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape
