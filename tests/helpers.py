"""Shared test helpers: the option grid, building layers and running them uniformly.

A :class:`Case` names one layer configuration (cell mode and options).  The helpers
hide the differences between the LSTM (state is a pair) and RNN/GRU (one array), so
every test can be written once for all cells.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import naive

MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_cho")


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer configuration; ``mode`` is one of :data:`MODES`."""

    mode: str
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    batch_first: bool = False
    lengths: bool = False  # use per-sequence lengths (B = 3: lengths [T, 1, T - 1])
    unbatched: bool = False
    input_size: int = 3
    hidden_size: int = 3
    steps: int = 4
    batch: int = 3

    @property
    def cell(self):
        """The naive-reference mode (``gru_cho`` is ``gru`` with ``reset_after=False``)."""
        return "gru" if self.mode == "gru_cho" else self.mode

    @property
    def reset_after(self):
        return self.mode != "gru_cho"

    @property
    def is_lstm(self):
        return self.mode == "lstm"

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    def id(self):
        parts = [self.mode, f"L{self.num_layers}", f"I{self.input_size}", f"H{self.hidden_size}"]
        for flag in ("bidirectional", "lengths", "batch_first", "unbatched"):
            if getattr(self, flag):
                parts.append(flag)
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)


def option_grid(modes=MODES):
    """The option grid every cell is tested over (odd sizes 1, 3, 7)."""
    cases = []
    for mode in modes:
        cases += [
            Case(mode),
            Case(mode, input_size=1, hidden_size=7),
            Case(mode, input_size=7, hidden_size=1, num_layers=2),
            Case(mode, num_layers=2, bidirectional=True),
            Case(mode, bidirectional=True, lengths=True),
            Case(mode, num_layers=2, lengths=True),
            Case(mode, batch_first=True, bidirectional=True, lengths=True),
            Case(mode, bias=False, num_layers=2),
            Case(mode, unbatched=True, bidirectional=True),
            Case(mode, num_layers=2, bidirectional=True, bias=False, batch_first=True,
                 lengths=True, input_size=1, hidden_size=3),
        ]
    return cases


def make_layer(case, dtype=np.float64, seed=0, **kwargs):
    """Build the numrnn layer for ``case`` (extra keyword arguments are passed on)."""
    import numrnn

    common = dict(num_layers=case.num_layers, bias=case.bias, batch_first=case.batch_first,
                  bidirectional=case.bidirectional, dtype=dtype, seed=seed)
    common.update(kwargs)
    if case.mode == "lstm":
        return numrnn.LSTM(case.input_size, case.hidden_size, **common)
    if case.mode in ("gru", "gru_cho"):
        return numrnn.GRU(case.input_size, case.hidden_size, reset_after=case.reset_after,
                          **common)
    return numrnn.RNN(case.input_size, case.hidden_size,
                      nonlinearity=case.mode.split("_")[1], **common)


def random_params(case, rng):
    """Random float64 parameters for ``case`` with non-zero, unequal biases."""
    return naive.random_params(rng, case.cell, case.input_size, case.hidden_size,
                               case.num_layers, case.bidirectional, case.bias)


def set_params(layer, params):
    """Write ``params`` into the layer's own arrays, in place (as an optimizer would)."""
    assert set(layer.params) == set(params)
    for name, value in params.items():
        layer.params[name][...] = value


def random_inputs(case, rng, dtype=np.float64):
    """Random ``x``, initial state, ``lengths`` and output gradients for ``case``.

    Returns a dict with keys ``x``, ``h0``, ``c0`` (None unless LSTM), ``lengths``
    (None unless ``case.lengths``), ``dy``, ``dh_n``, ``dc_n`` (None unless LSTM);
    shapes follow the layer's conventions (batch_first, unbatched).
    """
    steps, batch = case.steps, case.batch
    states = case.num_layers * case.directions
    features = case.directions * case.hidden_size
    if case.unbatched:
        x_shape, y_shape = (steps, case.input_size), (steps, features)
        state_shape = (states, case.hidden_size)
    elif case.batch_first:
        x_shape, y_shape = (batch, steps, case.input_size), (batch, steps, features)
        state_shape = (states, batch, case.hidden_size)
    else:
        x_shape, y_shape = (steps, batch, case.input_size), (steps, batch, features)
        state_shape = (states, batch, case.hidden_size)

    def draw(shape):
        return rng.normal(size=shape).astype(dtype)

    lengths = None
    if case.lengths:
        lengths = np.array([steps, 1, steps - 1][:batch] + [steps] * max(0, batch - 3))
    return dict(
        x=draw(x_shape),
        h0=draw(state_shape),
        c0=draw(state_shape) if case.is_lstm else None,
        lengths=lengths,
        dy=draw(y_shape),
        dh_n=draw(state_shape),
        dc_n=draw(state_shape) if case.is_lstm else None,
    )


def forward(layer, case, x, h0=None, c0=None, lengths=None):
    """Call the layer; returns ``(y, h_n, c_n)`` with ``c_n`` None unless LSTM."""
    if case.is_lstm:
        state = None if h0 is None else (h0, c0)
        y, (h_n, c_n) = layer(x, state, lengths=lengths)
        return y, h_n, c_n
    y, h_n = layer(x, h0, lengths=lengths)
    return y, h_n, None


def backward(layer, case, dy, dh_n=None, dc_n=None):
    """Call ``layer.backward``; returns ``(dx, dh0, dc0)`` with ``dc0`` None unless LSTM."""
    if case.is_lstm:
        dstate = None if dh_n is None and dc_n is None else (dh_n, dc_n)
        dx, (dh0, dc0) = layer.backward(dy, dstate)
        return dx, dh0, dc0
    dx, dh0 = layer.backward(dy, dh_n)
    return dx, dh0, None


def scalar_loss(y, h_n, c_n, dy, dh_n, dc_n):
    """``sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n)``, the function backward differentiates."""
    total = float(np.sum(y * dy)) + float(np.sum(h_n * dh_n))
    if c_n is not None:
        total += float(np.sum(c_n * dc_n))
    return total


def naive_forward(case, params, x, h0=None, c0=None, lengths=None):
    """The naive reference in the layer's conventions (batch_first, unbatched)."""
    x = np.asarray(x, dtype=np.float64)
    if case.unbatched:
        x = x[:, None, :]
        h0 = None if h0 is None else h0[:, None, :]
        c0 = None if c0 is None else c0[:, None, :]
    elif case.batch_first:
        x = x.transpose(1, 0, 2)
    y, h_n, c_n = naive.forward(case.cell, params, x, h0, c0, num_layers=case.num_layers,
                                bidirectional=case.bidirectional, lengths=lengths,
                                reset_after=case.reset_after)
    if case.unbatched:
        y, h_n = y[:, 0], h_n[:, 0]
        c_n = None if c_n is None else c_n[:, 0]
    elif case.batch_first:
        y = y.transpose(1, 0, 2)
    return y, h_n, c_n


def assert_rel_close(actual, expected, rtol, name=""):
    """Elementwise ``|actual - expected| <= rtol * (|expected| + max|expected|)``.

    That is, relative to each value and to the scale of the whole array, so values
    that happen to be near zero are not held to an impossible relative tolerance.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=name)
