"""Slow, obviously-right pure-NumPy references that every numrnn kernel is held to.

Nothing here imports numrnn.  The forward pass loops over layers, directions,
sequences and timesteps one at a time and writes each cell's equations out in full,
exactly as in the PyTorch documentation of ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``
(plus the Cho et al. 2014 form of the GRU).  Parameters come as a dict with
PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...); missing bias
entries mean ``bias=False``.

Also here: :func:`central_difference`, a float64 central finite-difference
gradient used to check every backward pass.
"""

from __future__ import annotations

import numpy as np

#: Number of stacked gate blocks per mode (rows of ``weight_ih`` = GATES * H).
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def sigmoid(v):
    """Logistic function ``1 / (1 + exp(-v))`` of a float64 vector (no overflow warnings)."""
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def param_names(num_layers, bidirectional, bias=True):
    """PyTorch's parameter names, in PyTorch's order."""
    names = []
    for layer in range(num_layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            names += [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
            if bias:
                names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
    return names


def param_shapes(mode, input_size, hidden_size, num_layers, bidirectional, bias=True):
    """``{name: shape}`` for a layer with these options (PyTorch's shapes)."""
    gates = GATES[mode]
    directions = 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else directions * hidden_size
        for suffix in ("", "_reverse") if bidirectional else ("",):
            shapes[f"weight_ih_l{layer}{suffix}"] = (gates * hidden_size, layer_input)
            shapes[f"weight_hh_l{layer}{suffix}"] = (gates * hidden_size, hidden_size)
            if bias:
                shapes[f"bias_ih_l{layer}{suffix}"] = (gates * hidden_size,)
                shapes[f"bias_hh_l{layer}{suffix}"] = (gates * hidden_size,)
    return shapes


def random_params(rng, mode, input_size, hidden_size, num_layers=1, bidirectional=False,
                  bias=True, scale=0.8):
    """Random float64 parameters with non-zero, unequal biases (uniform in +-scale)."""
    return {
        name: rng.uniform(-scale, scale, size=shape)
        for name, shape in param_shapes(mode, input_size, hidden_size, num_layers,
                                        bidirectional, bias).items()
    }


def _cell(mode, p, x, h, c, reset_after):
    """One timestep of one sequence: returns the new ``(h, c)`` (``c`` is None unless LSTM)."""
    w_ih, w_hh, b_ih, b_hh = p
    hidden = h.shape[0]
    if mode == "rnn_tanh":
        return np.tanh(w_ih @ x + b_ih + w_hh @ h + b_hh), None
    if mode == "rnn_relu":
        return np.maximum(w_ih @ x + b_ih + w_hh @ h + b_hh, 0.0), None
    if mode == "lstm":
        a = w_ih @ x + b_ih + w_hh @ h + b_hh
        i = sigmoid(a[0:hidden])
        f = sigmoid(a[hidden:2 * hidden])
        g = np.tanh(a[2 * hidden:3 * hidden])
        o = sigmoid(a[3 * hidden:4 * hidden])
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    if mode == "gru":
        rows_r, rows_z, rows_n = (slice(k * hidden, (k + 1) * hidden) for k in range(3))
        r = sigmoid(w_ih[rows_r] @ x + b_ih[rows_r] + w_hh[rows_r] @ h + b_hh[rows_r])
        z = sigmoid(w_ih[rows_z] @ x + b_ih[rows_z] + w_hh[rows_z] @ h + b_hh[rows_z])
        if reset_after:
            n = np.tanh(w_ih[rows_n] @ x + b_ih[rows_n] + r * (w_hh[rows_n] @ h + b_hh[rows_n]))
        else:
            n = np.tanh(w_ih[rows_n] @ x + b_ih[rows_n] + w_hh[rows_n] @ (r * h) + b_hh[rows_n])
        return (1.0 - z) * n + z * h, None
    raise ValueError(f"unknown mode {mode!r}")


def forward(mode, params, x, h0=None, c0=None, *, num_layers=1, bidirectional=False,
            lengths=None, reset_after=True):
    """Reference forward pass of a (stacked, optionally bidirectional) recurrent layer.

    Parameters
    ----------
    mode : {"rnn_tanh", "rnn_relu", "lstm", "gru"}
    params : dict of str -> ndarray
        PyTorch names and shapes; bias entries may be absent (``bias=False``).
    x : ndarray, shape (T, B, I)
        Time-major input.
    h0, c0 : ndarray, shape (L*D, B, H), optional
        Initial states (zeros when None); ``c0`` is for the LSTM only.
    lengths : sequence of int, shape (B,), optional
        Valid length of each sequence, as ``pack_padded_sequence(enforce_sorted=False)``.
    reset_after : bool
        GRU form: PyTorch's (True) or Cho et al.'s (False).

    Returns
    -------
    y : ndarray, shape (T, B, D*H)
        Zero at ``t >= lengths[b]``.
    h_n : ndarray, shape (L*D, B, H)
    c_n : ndarray, shape (L*D, B, H), or None unless ``mode == "lstm"``
    """
    x = np.asarray(x, dtype=np.float64)
    steps, batch, _ = x.shape
    directions = 2 if bidirectional else 1
    hidden = params["weight_hh_l0"].shape[1]
    if lengths is None:
        lengths = [steps] * batch
    if h0 is None:
        h0 = np.zeros((num_layers * directions, batch, hidden))
    if c0 is None:
        c0 = np.zeros((num_layers * directions, batch, hidden))
    h_n = np.zeros((num_layers * directions, batch, hidden))
    c_n = np.zeros((num_layers * directions, batch, hidden))
    layer_input = x
    for layer in range(num_layers):
        output = np.zeros((steps, batch, directions * hidden))
        for direction in range(directions):
            suffix = "_reverse" if direction == 1 else ""
            w_ih = params[f"weight_ih_l{layer}{suffix}"]
            w_hh = params[f"weight_hh_l{layer}{suffix}"]
            b_ih = params.get(f"bias_ih_l{layer}{suffix}", np.zeros(w_ih.shape[0]))
            b_hh = params.get(f"bias_hh_l{layer}{suffix}", np.zeros(w_hh.shape[0]))
            k = layer * directions + direction
            for b in range(batch):
                length = int(lengths[b])
                times = range(length - 1, -1, -1) if direction == 1 else range(length)
                h = np.array(h0[k, b], dtype=np.float64)
                c = np.array(c0[k, b], dtype=np.float64)
                for t in times:
                    h, c = _cell(mode, (w_ih, w_hh, b_ih, b_hh), layer_input[t, b], h, c,
                                 reset_after)
                    output[t, b, direction * hidden:(direction + 1) * hidden] = h
                h_n[k, b] = h
                if mode == "lstm":
                    c_n[k, b] = c
        layer_input = output
    return layer_input, h_n, (c_n if mode == "lstm" else None)


def central_difference(fn, arrays, eps=1e-6):
    """Central finite-difference gradient of a scalar function, in float64.

    Parameters
    ----------
    fn : callable () -> float
        Reads ``arrays`` (which are perturbed in place, one entry at a time).
    arrays : list of ndarray (float64)
        The variables; each is restored exactly after its entries are perturbed.
    eps : float
        Step.

    Returns
    -------
    list of ndarray
        ``d fn / d arrays[k]``, same shapes, computed as ``(f(a+eps) - f(a-eps)) / (2 eps)``.
    """
    return [central_difference_at(fn, array, range(array.size), eps).reshape(array.shape) for array in arrays]


def central_difference_at(fn, array, entries, eps=1e-6):
    """Central differences of the scalar ``fn()`` at some flat ``entries`` of ``array``
    (float64, perturbed in place and restored exactly): an array of ``len(entries)``."""
    flat = array.reshape(-1)
    assert array.dtype == np.float64 and np.shares_memory(flat, array)
    out = np.empty(len(entries))
    for k, index in enumerate(entries):
        saved = flat[index]
        flat[index] = saved + eps
        plus = float(fn())
        flat[index] = saved - eps
        minus = float(fn())
        flat[index] = saved
        out[k] = (plus - minus) / (2.0 * eps)
    return out
