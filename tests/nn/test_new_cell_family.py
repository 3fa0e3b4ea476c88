"""A new cell family through the registry alone: a toy minimal gated unit (toy_mgu_cell: its
pointwise math; toy_mgu_cpu: its CPU kernels) is registered with numrnn.cells.register and
runs as a layer with no change to the layer, the stack driver or the backend: stacked,
bidirectional, with lengths, step() and BPTT, held to a NumPy reference and to central
finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

import naive
import toy_mgu_cell
from numrnn import cells
from numrnn.nn.recurrent import RNNBase

TOY = cells.CellFamily(
    name="toy_mgu",
    kernel="toy_mgu",
    variant=False,
    gates=toy_mgu_cell.GATES,
    state_names=("h",),
    math=toy_mgu_cell,
    layer="MGU",
    backend_modules=(("cpu", "toy_mgu_cpu"),),
)


class MGU(RNNBase):
    """The toy family as a layer: one line."""

    _cell = TOY.name


@pytest.fixture(autouse=True, scope="module")
def toy_family():
    cells.register(TOY)
    yield TOY
    cells.unregister(TOY.name)


def reference(params, x, h0, lengths, num_layers, bidirectional):
    """The MGU equations in NumPy, one row and step at a time."""
    sigmoid = naive.sigmoid
    steps, batch, _ = x.shape
    directions = 2 if bidirectional else 1
    hidden = params["weight_hh_l0"].shape[1]
    h_n = np.zeros_like(h0)
    layer_input = x
    for layer in range(num_layers):
        output = np.zeros((steps, batch, directions * hidden))
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = params["weight_ih" + suffix], params["weight_hh" + suffix]
            b_ih, b_hh = params["bias_ih" + suffix], params["bias_hh" + suffix]
            k = layer * directions + direction
            for b in range(batch):
                h = h0[k, b].copy()
                times = range(lengths[b] - 1, -1, -1) if direction else range(lengths[b])
                for t in times:
                    a_x, a_h = w_ih @ layer_input[t, b] + b_ih, w_hh @ h + b_hh
                    f = sigmoid(a_x[:hidden] + a_h[:hidden])
                    n = np.tanh(a_x[hidden:] + f * a_h[hidden:])
                    h = (1 - f) * h + f * n
                    output[t, b, direction * hidden : (direction + 1) * hidden] = h
                h_n[k, b] = h
        layer_input = output
    return layer_input, h_n


def make(num_layers=2, bidirectional=True):
    layer = MGU(3, 4, num_layers=num_layers, bidirectional=bidirectional, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    for value in layer.params.values():  # non-zero, unequal biases
        value[...] = rng.uniform(-0.6, 0.6, value.shape)
    return layer


def test_the_family_is_the_registry_s():
    layer = make()
    assert layer.family is TOY and layer.state_size == 1
    assert layer.params["weight_ih_l0"].shape == (2 * 4, 3)
    assert layer.params["weight_hh_l1_reverse"].shape == (2 * 4, 4)
    with pytest.raises(ValueError, match="no kernels for backend 'cuda'"):
        TOY.backend_module("cuda")


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_forward_matches_the_reference(num_layers, bidirectional):
    layer = make(num_layers, bidirectional)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3, 3))
    h0 = rng.normal(size=(num_layers * (1 + bidirectional), 3, 4))
    lengths = np.array([6, 2, 4])
    y, h_n = layer(x, h0, lengths=lengths)
    y_ref, h_ref = reference(layer.params, x, h0, lengths, num_layers, bidirectional)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n, h_ref, rtol=1e-12, atol=1e-14)


def test_backward_matches_central_differences():
    layer = make()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 2, 3))
    h0 = rng.normal(size=(4, 2, 4))
    lengths = np.array([5, 3])
    dy = rng.normal(size=(5, 2, 8))
    dh_n = rng.normal(size=(4, 2, 4))

    def loss():
        y, h_n = layer.forward(x, h0, lengths=lengths)
        return float(np.sum(y * dy) + np.sum(h_n * dh_n))

    loss()
    layer.zero_grad()
    dx, dh0 = layer.backward(dy, dh_n)
    names = list(layer.params)
    numeric = naive.central_difference(loss, [x, h0] + [layer.params[name] for name in names])
    np.testing.assert_allclose(dx, numeric[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dh0, numeric[1], rtol=1e-6, atol=1e-8)
    for name, expected in zip(names, numeric[2:]):
        np.testing.assert_allclose(layer.grads[name], expected, rtol=1e-6, atol=1e-8, err_msg=name)


def test_step_streams_what_forward_computes():
    layer = make(num_layers=2, bidirectional=False)
    x = np.random.default_rng(4).normal(size=(5, 2, 3))
    y, h_n = layer(x)
    state = None
    for t in range(5):
        out, state = layer.step(x[t], state)
        np.testing.assert_allclose(out, y[t], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state, h_n, rtol=1e-13, atol=1e-15)
