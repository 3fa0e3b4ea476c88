"""The GRU's reset terms and bias folding (numrnn.cells.gru), held to central finite
differences in float64, as plain Python and compiled for the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn._jit import compile_scalar
from numrnn.cells import gru

STEP = 1e-6


def central_difference(fn, args, index):
    """d fn(*args) / d args[index] for a scalar-valued fn, central differences."""
    up, down = list(args), list(args)
    up[index] += STEP
    down[index] -= STEP
    return (fn(*up) - fn(*down)) / (2 * STEP)


@pytest.mark.parametrize("target", ["python", "cpu"])
def test_reset_after_backward_matches_finite_differences(target):
    forward, backward = gru.candidate_reset_after, gru.candidate_reset_after_backward
    if target == "cpu":
        forward, backward = compile_scalar(forward, "cpu"), compile_scalar(backward, "cpu")
    rng = np.random.default_rng(0)
    for a_x, reset_gate, h_candidate, d_a in rng.normal(size=(5, 4)):
        d_reset_gate, d_h_candidate = backward(d_a, reset_gate, h_candidate)
        loss = lambda *args: d_a * forward(*args)  # noqa: E731
        args = (a_x, reset_gate, h_candidate)
        assert forward(*args) == pytest.approx(a_x + reset_gate * h_candidate, rel=1e-15)
        assert d_reset_gate == pytest.approx(central_difference(loss, args, 1), rel=1e-7, abs=1e-9)
        assert d_h_candidate == pytest.approx(central_difference(loss, args, 2), rel=1e-7, abs=1e-9)
        assert central_difference(loss, args, 0) == pytest.approx(d_a, rel=1e-7)


@pytest.mark.parametrize("target", ["python", "cpu"])
def test_reset_before_backward_matches_finite_differences(target):
    reset, backward = gru.reset_hidden, gru.reset_hidden_backward
    candidate = gru.candidate_reset_before
    if target == "cpu":
        reset, backward, candidate = (compile_scalar(fn, "cpu") for fn in (reset, backward, candidate))
    rng = np.random.default_rng(1)
    for reset_gate, h_prev, d_reset_h, a_x, b_hn in rng.normal(size=(5, 5)):
        d_reset_gate, d_h_prev = backward(d_reset_h, reset_gate, h_prev)
        loss = lambda *args: d_reset_h * reset(*args)  # noqa: E731
        assert d_reset_gate == pytest.approx(central_difference(loss, (reset_gate, h_prev), 0), rel=1e-7, abs=1e-9)
        assert d_h_prev == pytest.approx(central_difference(loss, (reset_gate, h_prev), 1), rel=1e-7, abs=1e-9)
        # the Cho candidate adds the product of W_hn and r * h_prev to its x side and b_hn
        assert candidate(a_x, 0.25, b_hn) == (a_x + 0.25) + b_hn


@pytest.mark.parametrize("target", ["python", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_biases_adds_b_hh_to_the_r_z_rows_only(target, dtype):
    fold = gru.fold_biases if target == "python" else compile_scalar(gru.fold_biases, "cpu")
    hidden = 4
    rng = np.random.default_rng(2)
    b_ih, b_hh = rng.normal(size=(2, gru.GATES * hidden)).astype(dtype)
    bias, b_hn = fold(b_ih, b_hh)
    folded = gru.FOLDED_GATES * hidden
    np.testing.assert_array_equal(bias[:folded], b_ih[:folded] + b_hh[:folded])
    np.testing.assert_array_equal(bias[folded:], b_ih[folded:])
    np.testing.assert_array_equal(b_hn, b_hh[folded:])
    assert bias.dtype == dtype and b_hn.dtype == dtype
    b_hn[:] = 0  # copies: the parameters are untouched
    assert np.all(b_hh[folded:] != 0)
