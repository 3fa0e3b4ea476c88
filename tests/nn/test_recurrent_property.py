"""Hypothesis property tests over shapes and options: forward equals the naive
reference, and backward agrees with a central difference along a random direction
through every parameter, the input and the initial state at once."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (
    MODES,
    Case,
    backward,
    forward,
    make_layer,
    naive_forward,
    random_inputs,
    random_params,
    scalar_loss,
    set_params,
)

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FORWARD_TOL = dict(rtol=1e-12, atol=1e-12)


@st.composite
def cases_and_lengths(draw):
    unbatched = draw(st.booleans()) and draw(st.booleans())
    case = Case(
        mode=draw(st.sampled_from(MODES)),
        num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()) and not unbatched,
        unbatched=unbatched,
        input_size=draw(st.integers(1, 4)),
        hidden_size=draw(st.integers(1, 4)),
        steps=draw(st.integers(1, 5)),
        batch=1 if unbatched else draw(st.integers(1, 4)),
    )
    lengths = None
    if not unbatched and draw(st.booleans()):
        lengths = draw(st.lists(st.integers(1, case.steps), min_size=case.batch,
                                max_size=case.batch))
    return case, lengths, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=30, deadline=None)
@given(cases_and_lengths())
def test_property_forward_matches_naive(drawn):
    case, lengths, seed = drawn
    rng = np.random.default_rng(seed)
    layer = make_layer(case)
    params = random_params(case, rng)
    set_params(layer, params)
    inp = random_inputs(case, rng)
    got = forward(layer, case, inp["x"], inp["h0"], inp["c0"], lengths)
    want = naive_forward(case, params, inp["x"], inp["h0"], inp["c0"], lengths)
    for a, b in zip(got, want):
        if b is not None:
            np.testing.assert_allclose(a, b, **FORWARD_TOL)


@settings(max_examples=30, deadline=None)
@given(cases_and_lengths())
def test_property_directional_derivative(drawn):
    """One random direction through every parameter, input and state at once."""
    case, lengths, seed = drawn
    rng = np.random.default_rng(seed)
    layer = make_layer(case)
    set_params(layer, random_params(case, rng))
    inp = random_inputs(case, rng)
    names = (["h0", "c0"] if case.is_lstm else ["h0"]) + ["x"]
    base = {n: inp[n] for n in names} | {n: layer.params[n].copy() for n in layer.params}
    direction = {n: rng.normal(size=v.shape) for n, v in base.items()}

    def loss(shift):
        for n in layer.params:
            layer.params[n][...] = base[n] + shift * direction[n]
        moved = {n: base[n] + shift * direction[n] for n in names}
        y, h_n, c_n = forward(layer, case, moved["x"], moved["h0"], moved.get("c0"), lengths)
        return scalar_loss(y, h_n, c_n, inp["dy"], inp["dh_n"], inp["dc_n"])

    eps = 1e-6
    numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    loss(0.0)
    layer.zero_grad()
    dx, dh0, dc0 = backward(layer, case, inp["dy"], inp["dh_n"], inp["dc_n"])
    grads = dict(layer.grads, x=dx, h0=dh0, c0=dc0)
    analytic = sum(float(np.sum(grads[n] * direction[n])) for n in base)
    assert abs(numeric - analytic) <= 1e-6 * (1 + abs(analytic))
