"""The LSTM and vanilla RNN pointwise functions (numrnn.cells.lstm, numrnn.cells.rnn) held to
central finite differences in float64, as plain Python and compiled for the CPU; and the
registry's view of every cell family."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from numrnn import cells
from numrnn._jit import compile_scalar
from numrnn.cells import lstm, rnn

STEP = 1e-6


def central_difference(loss, args, index):
    up, down = list(args), list(args)
    up[index] += STEP
    down[index] -= STEP
    return (loss(*up) - loss(*down)) / (2 * STEP)


def _compiled(fn, target):
    return compile_scalar(fn, "cpu") if target == "cpu" else fn


# Plain Python evaluates the sigmoid in float32 even for float64 input (math.exp returns a
# Python float, and NumPy 2 keeps the float32 constant ONE's type against it), too coarse for
# central differences; compiled, everything is float64.
@pytest.mark.parametrize("target", ["cpu"])
def test_lstm_backward_matches_finite_differences(target):
    forward, backward = _compiled(lstm.forward, target), _compiled(lstm.backward, target)
    rng = np.random.default_rng(1)
    for *pre, c_prev, dh, dc in rng.normal(size=(6, 7)):
        gates_and_state = forward(*pre, c_prev)
        grads = backward(dh, dc, *gates_and_state[:5], c_prev)

        def loss(a_i, a_f, a_g, a_o, c_before):
            *_, c, h = forward(a_i, a_f, a_g, a_o, c_before)
            return dh * h + dc * c

        args = (*pre, c_prev)
        for index in range(5):
            assert grads[index] == pytest.approx(central_difference(loss, args, index), rel=1e-6, abs=1e-9)


def test_lstm_forward_is_the_documented_equations():
    a_i, a_f, a_g, a_o, c_prev = 0.3, -1.2, 0.7, 2.0, -0.4
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c = sig(a_f) * c_prev + sig(a_i) * np.tanh(a_g)
    expected = (sig(a_i), sig(a_f), np.tanh(a_g), sig(a_o), c, sig(a_o) * np.tanh(c))
    assert compile_scalar(lstm.forward, "cpu")(a_i, a_f, a_g, a_o, c_prev) == pytest.approx(expected, rel=1e-14)
    assert lstm.forward(a_i, a_f, a_g, a_o, c_prev) == pytest.approx(expected, rel=1e-6)  # see above


@pytest.mark.parametrize("target", ["python", "cpu"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_backward_matches_finite_differences(target, nonlinearity):
    forward = _compiled(getattr(rnn, f"{nonlinearity}_forward"), target)
    backward = _compiled(getattr(rnn, f"{nonlinearity}_backward"), target)
    for pre, dh in np.random.default_rng(2).normal(size=(8, 2)):
        if abs(pre) < 10 * STEP:  # relu's kink
            continue
        grad = backward(dh, forward(pre))
        assert grad == pytest.approx(central_difference(lambda a: dh * forward(a), (pre,), 0), rel=1e-6, abs=1e-9)


def test_compiled_and_python_cells_agree():
    rng = np.random.default_rng(3)
    compiled = compile_scalar(lstm.forward, "cpu")
    for args in rng.normal(size=(10, 5)) * 3:
        assert compiled(*args) == pytest.approx(lstm.forward(*args), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", sorted(cells.FAMILIES))
def test_registry_entry_is_consistent(name):
    family = cells.cell_family(name)
    assert family.name == name and cells.cell_family(family) is family
    assert family.gates == family.math.GATES == cells.GATES[name]
    assert family.state_size == len(family.state_names) == cells.STATE_SIZES[name]
    assert family.gate_rows(5) == 5 * family.gates
    assert copy.deepcopy(family) is family and pickle.loads(pickle.dumps(family)) is family


def test_registry_names_the_variants():
    assert cells.rnn_family("relu").variant and not cells.rnn_family("tanh").variant
    assert cells.gru_family(True).name == "gru" and cells.gru_family(False).name == "gru_reset_before"
    assert {f.kernel for f in cells.FAMILIES.values()} == {"rnn", "lstm", "gru"}


def test_unknown_cell_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"cell must be one of .*'lstm'.*got 'lstm2'"):
        cells.cell_family("lstm2")
    with pytest.raises(ValueError, match="got None"):
        cells.cell_family(None)


def test_register_refuses_a_different_family_under_a_taken_name():
    taken = cells.FAMILIES["lstm"]
    clash = cells.CellFamily("lstm", "lstm", True, 4, ("h", "c"), lstm, "LSTM")
    with pytest.raises(ValueError, match="already registered as 'lstm'"):
        cells.register(clash)
    assert cells.FAMILIES["lstm"] is taken
    assert cells.register(taken) is taken  # the same family again is a no-op
    with pytest.raises(TypeError, match="CellFamily"):
        cells.register("lstm")
