"""The NumPy kernels of the first-use tier (numrnn.backends.cpu.numpy_kernels), run through
the layers as a first use runs them: against the naive reference, against the compiled
kernels on every case of the option grid (float64 and float32), and against central
differences; plus ``step()``, which takes the validated path while the tier is on."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
import naive

GRID = helpers.option_grid()


def _run(case, dtype, params, inputs):
    layer = helpers.make_layer(case, dtype=dtype)
    helpers.set_params(layer, params)
    cast = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in inputs.items()}
    y, h_n, c_n = helpers.forward(layer, case, cast["x"], cast["h0"], cast["c0"], cast["lengths"])
    dx, dh0, dc0 = helpers.backward(layer, case, cast["dy"], cast["dh_n"], cast["dc_n"])
    outputs = {"y": y, "h_n": h_n, "dx": dx, "dh0": dh0}
    if case.is_lstm:
        outputs.update(c_n=c_n, dc0=dc0)
    outputs.update({f"grad {name}": grad for name, grad in layer.grads.items()})
    return outputs


@pytest.mark.parametrize("case", GRID, ids=[c.id() for c in GRID])
def test_numpy_tier_equals_the_compiled_kernels(case, first_use_tier, rng):
    params = helpers.random_params(case, rng)
    inputs = helpers.random_inputs(case, rng)
    family = helpers.make_layer(case).family.kernel
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        compiled = (first_use_tier("compiled"), _run(case, dtype, params, inputs))[1]
        launched = first_use_tier("numpy")
        on_numpy = _run(case, dtype, params, inputs)
        assert (family, np.dtype(dtype).name) in launched  # the NumPy kernels answered
        assert on_numpy.keys() == compiled.keys()
        for name, value in on_numpy.items():
            assert value.dtype == dtype, name
            helpers.assert_rel_close(value, compiled[name], rtol, f"{name} {np.dtype(dtype).name}")


def _numpy_tier_layer(case, first_use_tier, rng):
    """A float64 layer of ``case`` with random parameters on the NumPy tier, its parameters and inputs."""
    first_use_tier("numpy")
    params = helpers.random_params(case, rng)
    layer = helpers.make_layer(case)
    helpers.set_params(layer, params)
    return layer, params, helpers.random_inputs(case, rng)


@pytest.mark.parametrize("case", [c for c in GRID if c.lengths and c.bidirectional][:5], ids=lambda c: c.id())
def test_numpy_tier_forward_matches_the_naive_reference(case, first_use_tier, rng):
    layer, params, inputs = _numpy_tier_layer(case, first_use_tier, rng)
    y, h_n, c_n = helpers.forward(layer, case, inputs["x"], inputs["h0"], inputs["c0"], inputs["lengths"])
    y_ref, h_ref, c_ref = helpers.naive_forward(case, params, inputs["x"], inputs["h0"], inputs["c0"], inputs["lengths"])
    helpers.assert_rel_close(y, y_ref, 1e-12, "y")
    helpers.assert_rel_close(h_n, h_ref, 1e-12, "h_n")
    if case.is_lstm:
        helpers.assert_rel_close(c_n, c_ref, 1e-12, "c_n")


MODE_CASES = [helpers.Case(mode, num_layers=2, bidirectional=True, lengths=True, input_size=2, hidden_size=3)
              for mode in helpers.MODES]


@pytest.mark.parametrize("case", MODE_CASES, ids=[c.id() for c in MODE_CASES])
def test_numpy_tier_gradients_match_central_differences(case, first_use_tier, rng):
    """Every input and state gradient, and sampled entries of every weight gradient."""
    layer, _, inputs = _numpy_tier_layer(case, first_use_tier, rng)
    x, h0, c0 = inputs["x"].copy(), inputs["h0"].copy(), None if inputs["c0"] is None else inputs["c0"].copy()

    def loss():
        y, h_n, c_n = helpers.forward(layer, case, x, h0, c0, inputs["lengths"])
        return helpers.scalar_loss(y, h_n, c_n, inputs["dy"], inputs["dh_n"], inputs["dc_n"])

    loss()
    dx, dh0, dc0 = helpers.backward(layer, case, inputs["dy"], inputs["dh_n"], inputs["dc_n"])
    grads = {name: grad.copy() for name, grad in layer.grads.items()}
    states = [h0] + ([c0] if case.is_lstm else [])
    numeric = naive.central_difference(loss, [x] + states)
    helpers.assert_rel_close(dx, numeric[0], 1e-7, "dx")
    helpers.assert_rel_close(dh0, numeric[1], 1e-7, "dh0")
    if case.is_lstm:
        helpers.assert_rel_close(dc0, numeric[2], 1e-7, "dc0")
    for name, value in layer.params.items():
        entries = rng.choice(value.size, size=min(4, value.size), replace=False)
        expected = naive.central_difference_at(loss, value, entries)
        assert np.all(np.abs(grads[name].reshape(-1)[entries] - expected) <= 1e-7 * (1 + np.abs(expected))), name


@pytest.mark.parametrize("mode", ["lstm", "gru", "gru_cho", "rnn_relu"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_on_the_numpy_tier_equals_the_compiled_fast_path(mode, num_layers, first_use_tier, rng):
    case = helpers.Case(mode, num_layers=num_layers, input_size=3, hidden_size=5)
    params = helpers.random_params(case, rng)
    x = rng.normal(size=(4, 2, 3)).astype(np.float32)
    runs = {}
    for name in ("compiled", "numpy"):
        first_use_tier(name)
        layer = helpers.make_layer(case, dtype=np.float32).eval()
        helpers.set_params(layer, params)
        state, outputs = None, []
        for t in range(len(x)):
            h, state = layer.step(x[t], state)
            outputs.append(h)
        runs[name] = (np.stack(outputs), layer._step_plan)
    assert runs["compiled"][1] is not None  # the compiled fast path ran ...
    assert runs["numpy"][1] is None  # ... and the NumPy tier took the validated path
    helpers.assert_rel_close(runs["numpy"][0], runs["compiled"][0], 2e-5, "step outputs")
