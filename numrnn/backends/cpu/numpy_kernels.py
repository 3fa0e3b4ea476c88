r"""NumPy kernels of the built-in cell families: what the CPU backend runs while its
compiled kernels do not exist yet (:mod:`numrnn.backends.cpu.first_use`).

They make the same calls as the compiled kernels
(:class:`~numrnn.backends.protocol.FamilyKernels`: ``forward``, ``backward``, ``step``,
with the conventions of :mod:`numrnn.backends.cpu`) from the same formulas: each
pointwise function of :mod:`numrnn.cells` runs here unchanged on whole (B, H) arrays,
its activations replaced by the NumPy array forms below
(:func:`numrnn._jit.compile_scalar` with target ``"numpy"``).  Nothing is compiled, so
the first call costs what NumPy costs.

Per timestep: one recurrent product ``(B, H) @ (H, G*H)`` through BLAS and one
array operation per term of the cell's formulas, so Python runs once per timestep
(the compiled drivers run the whole sequence in one call).  The input projection of
all timesteps, ``dx`` and the weight gradients are single products over ``T*B`` rows,
as in the compiled kernels.  Measured on a 2-core machine (README, First use): a
float32 LSTM forward + backward at (T, B, I, H) = (24, 32, 1, 32) takes about 1.3 ms
here, against 0.2 ms compiled.

Results agree with the compiled kernels to rounding (products summed in another
order; float32 ``tanh`` and ``sigmoid`` exact here, a 3e-7 approximation there), not
bit for bit: ``tests/backends/cpu/test_numpy_kernels.py`` holds them to 1e-5 (float32)
and 1e-12 (float64), and to central differences.
"""

from __future__ import annotations

import numpy as np

from numrnn._jit import compile_scalar, override_scalar
from numrnn.backends.protocol import FamilyKernels
from numrnn.cells import activations
from numrnn.cells import gru as gru_cell
from numrnn.cells import lstm as lstm_cell
from numrnn.cells import rnn as rnn_cell

ONE, ZERO = activations.ONE, activations.ZERO


# ------------------------------------------------------------------ activations on arrays


_HALF = np.float32(0.5)


def sigmoid(x):
    """Elementwise logistic function, without overflow.

    float32: ``(1 + tanh(x / 2)) / 2``, as the compiled float32 kernels (three
    operations, in place); float64: ``exp`` of ``-|x|`` only, exact in the tails too.
    """
    if x.dtype == np.float32:
        out = np.multiply(x, _HALF)
        np.tanh(out, out=out)
        out *= _HALF
        out += _HALF
        return out
    e = np.exp(-np.abs(x))
    return np.where(x >= ZERO, ONE, e) / (ONE + e)


def relu(x):
    """Elementwise ``max(x, 0)``; NaN stays NaN (as :func:`numrnn.cells.activations.relu`)."""
    return np.where(x < ZERO, ZERO, x)


def relu_grad(r):
    """``1`` where ``r > 0``, else ``0``, elementwise."""
    return np.where(r > ZERO, ONE, ZERO)


override_scalar("numpy", activations.sigmoid, sigmoid)
override_scalar("numpy", activations.tanh, np.tanh)
override_scalar("numpy", activations.relu, relu)
override_scalar("numpy", activations.relu_grad, relu_grad)


def _array_form(fn):
    return compile_scalar(fn, "numpy")


lstm_pointwise = _array_form(lstm_cell.forward)
lstm_pointwise_backward = _array_form(lstm_cell.backward)
gru_gates = _array_form(gru_cell.gates)
gru_gates_backward = _array_form(gru_cell.gates_backward)
gru_candidate_update = _array_form(gru_cell.candidate_update)
gru_candidate_update_backward = _array_form(gru_cell.candidate_update_backward)
gru_candidate_reset_after = _array_form(gru_cell.candidate_reset_after)
gru_candidate_reset_after_backward = _array_form(gru_cell.candidate_reset_after_backward)
gru_reset_hidden = _array_form(gru_cell.reset_hidden)
gru_reset_hidden_backward = _array_form(gru_cell.reset_hidden_backward)
gru_candidate_reset_before = _array_form(gru_cell.candidate_reset_before)
rnn_pointwise = {False: _array_form(rnn_cell.tanh_forward), True: _array_form(rnn_cell.relu_forward)}
rnn_pointwise_backward = {False: _array_form(rnn_cell.tanh_backward), True: _array_form(rnn_cell.relu_backward)}


# ------------------------------------------------------------------ the time loop


class _Steps:
    """The timesteps of one layer-direction call, in the kernels' convention: at step
    ``s`` row ``b`` is active when ``s < lengths[b]`` and then processes time index
    ``s`` (forward) or ``lengths[b] - 1 - s`` (``reverse``).

    With every length equal to ``T`` a step is one time index for all rows (plain
    slices, the common case); otherwise reads gather each row's time index and writes
    and state updates touch the active rows only.
    """

    def __init__(self, lengths, steps, reverse):
        self.lengths = lengths
        self.steps = steps
        self.reverse = reverse
        self.uniform = bool(np.all(lengths == steps))
        self.count = steps if self.uniform else int(lengths.max())
        self.rows = np.arange(len(lengths))

    def at(self, s):
        """``(index, active)``: ``array[index]`` is the (B, F) slab of step ``s``;
        ``active`` the (B,) mask of active rows, None when all are."""
        if self.uniform:
            return (self.steps - 1 - s if self.reverse else s), None
        active = s < self.lengths
        t = np.where(active, self.lengths - 1 - s if self.reverse else s, 0)
        return (t, self.rows), active

    @staticmethod
    def write(array, index, active, values):
        if active is None:
            array[index] = values
        else:
            t, rows = index
            array[t[active], rows[active]] = values[active]

    @staticmethod
    def keep(new, old, active):
        """The state after a step: ``new`` on active rows, ``old`` elsewhere."""
        return new if active is None else np.where(active[:, None], new, old)

    def clear_padding(self, *arrays):
        """Zero the (t, b) positions no step processes (``t >= lengths[b]``)."""
        if self.uniform:
            return
        padding = np.arange(self.steps)[:, None] >= self.lengths[None, :]
        for array in arrays:
            array[padding] = 0


def _project(x, w_ih, bias, out):
    """``out (T, B, F) = x W_ih^T + bias``: the input projection of every timestep."""
    steps, batch, features = x.shape
    rows = out.reshape(steps * batch, out.shape[2])
    np.dot(x.reshape(steps * batch, features), w_ih.T, out=rows)  # (np.matmul: 4x slower at I = 1)
    rows += bias


def _rows(array):
    """A (T, B, F) array as (T*B, F)."""
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2])


def _input_and_weight_gradients(x, d_pre, w_ih):
    """``dx = dA W_ih`` (T, B, I), ``dW_ih = dA^T X``, ``db = sum(dA)`` over T*B rows."""
    d_rows = _rows(d_pre)
    dx = (d_rows @ w_ih).reshape(x.shape)
    return dx, d_rows.T @ _rows(x), d_rows.sum(axis=0)


def _one_step(forward, variant, x, weights, state0):
    """``step`` through ``forward`` on a sequence of one timestep: the new state."""
    batch = x.shape[0]
    hidden = weights[1].shape[1]
    y = np.zeros((1, batch, hidden), dtype=x.dtype)
    state_n, _ = forward(variant, x[None], np.ones(batch, dtype=np.int64), False, weights, state0, y,
                         lambda name, features: np.empty((1, batch, features), dtype=x.dtype), None)
    return state_n


def _quiet():
    """The compiled kernels' error model: overflow to inf and NaN without warnings."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


# ------------------------------------------------------------------ LSTM


def lstm_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    gates, c_seq = buffer("gates", 4 * hidden), buffer("c_seq", hidden)
    c_prev_seq, h_prev_seq = buffer("c_prev", hidden), buffer("h_prev", hidden)
    steps = _Steps(lengths, x.shape[0], reverse)
    h, c = state0[0].copy(), state0[1].copy()
    with _quiet():
        _project(x, w_ih, b_ih + b_hh, gates)
        for s in range(steps.count):
            index, active = steps.at(s)
            a = gates[index] + h @ w_hh.T
            i, f, g, o, c_new, h_new = lstm_pointwise(
                a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 2 * hidden : 3 * hidden], a[:, 3 * hidden :], c)
            a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 2 * hidden : 3 * hidden], a[:, 3 * hidden :] = i, f, g, o
            for array, values in ((gates, a), (c_seq, c_new), (c_prev_seq, c), (h_prev_seq, h), (y, h_new)):
                steps.write(array, index, active, values)
            h, c = steps.keep(h_new, h, active), steps.keep(c_new, c, active)
    steps.clear_padding(gates, c_seq, c_prev_seq, h_prev_seq)
    return (h, c), (gates, c_seq, c_prev_seq, h_prev_seq)


def lstm_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, c_seq, c_prev_seq, h_prev_seq = buffers
    hidden = w_hh.shape[1]
    steps = _Steps(lengths, x.shape[0], reverse)
    dh, dc = dstate_n[0].copy(), dstate_n[1].copy()
    with _quiet():
        for s in reversed(range(steps.count)):
            index, active = steps.at(s)
            g = gates[index]
            d_i, d_f, d_g, d_o, dc_prev = lstm_pointwise_backward(
                dh + dy[index], dc, g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden : 3 * hidden],
                g[:, 3 * hidden :], c_seq[index], c_prev_seq[index])
            d_a = np.concatenate((d_i, d_f, d_g, d_o), axis=1)
            steps.write(gates, index, active, d_a)  # gates holds dA from here on
            dh, dc = steps.keep(d_a @ w_hh, dh, active), steps.keep(dc_prev, dc, active)
        dx, d_w_ih, d_b = _input_and_weight_gradients(x, gates, w_ih)
        d_w_hh = _rows(gates).T @ _rows(h_prev_seq)
    return dx, (dh, dc), (d_w_ih, d_w_hh, d_b, d_b.copy())


def lstm_step(variant, x, weights, state0):
    return _one_step(lstm_forward, variant, x, weights, state0)


# ------------------------------------------------------------------ GRU


def gru_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    """``variant``: reset-after (PyTorch) when True, else the Cho et al. form."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    gates, h_prev_seq, aux_seq = buffer("gates", 3 * hidden), buffer("h_prev", hidden), buffer("aux", hidden)
    bias, b_hn = gru_cell.fold_biases(b_ih, b_hh)
    w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]
    steps = _Steps(lengths, x.shape[0], reverse)
    h = state0[0].copy()
    with _quiet():
        _project(x, w_ih, bias, gates)
        for s in range(steps.count):
            index, active = steps.at(s)
            a = gates[index]  # (B, 3H): a copy where rows gather
            a_h = h @ (w_hh if variant else w_rz).T
            r, z = gru_gates(a[:, :hidden] + a_h[:, :hidden], a[:, hidden : 2 * hidden] + a_h[:, hidden : 2 * hidden])
            if variant:
                aux = a_h[:, 2 * hidden :] + b_hn  # W_hn h_prev + b_hn
                a_n = gru_candidate_reset_after(a[:, 2 * hidden :], r, aux)
            else:
                aux = gru_reset_hidden(r, h)  # r * h_prev
                a_n = gru_candidate_reset_before(a[:, 2 * hidden :], aux @ w_n.T, b_hn)
            n, h_new = gru_candidate_update(a_n, z, h)
            activated = np.concatenate((r, z, n), axis=1)
            for array, values in ((gates, activated), (aux_seq, aux), (h_prev_seq, h), (y, h_new)):
                steps.write(array, index, active, values)
            h = steps.keep(h_new, h, active)
    steps.clear_padding(gates, h_prev_seq, aux_seq)
    return (h,), (gates, h_prev_seq, aux_seq)


def gru_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, h_prev_seq, aux_seq = buffers
    hidden = w_hh.shape[1]
    w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]
    steps = _Steps(lengths, x.shape[0], reverse)
    dh = dstate_n[0].copy()
    with _quiet():
        for s in reversed(range(steps.count)):
            index, active = steps.at(s)
            g, h_prev, aux = gates[index], h_prev_seq[index], aux_seq[index]
            r, z, n = g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden :]
            d_a_n, d_z, dh_prev = gru_candidate_update_backward(dh + dy[index], z, n, h_prev)
            if variant:
                d_r, d_aux = gru_candidate_reset_after_backward(d_a_n, r, aux)  # d_aux: the h side of the n rows
                d_a_r, d_a_z = gru_gates_backward(d_r, d_z, r, z)
                dh_prev = dh_prev + np.concatenate((d_a_r, d_a_z, d_aux), axis=1) @ w_hh
                steps.write(aux_seq, index, active, d_aux)  # aux_seq holds the n rows' h-side dA from here on
            else:
                d_r, dh_reset = gru_reset_hidden_backward(d_a_n @ w_n, r, h_prev)
                d_a_r, d_a_z = gru_gates_backward(d_r, d_z, r, z)
                dh_prev = dh_prev + dh_reset + np.concatenate((d_a_r, d_a_z), axis=1) @ w_rz
            steps.write(gates, index, active, np.concatenate((d_a_r, d_a_z, d_a_n), axis=1))  # dA of the x side
            dh = steps.keep(dh_prev, dh, active)
        dx, d_w_ih, d_b_ih = _input_and_weight_gradients(x, gates, w_ih)
        d_rows, h_rows, aux_rows = _rows(gates), _rows(h_prev_seq), _rows(aux_seq)
        d_w_hh = np.empty_like(w_hh)
        d_w_hh[: 2 * hidden] = d_rows[:, : 2 * hidden].T @ h_rows
        d_b_hh = d_b_ih.copy()
        if variant:  # the n rows multiply h_prev, with the gradient dA_n * r
            d_w_hh[2 * hidden :] = aux_rows.T @ h_rows
            d_b_hh[2 * hidden :] = aux_rows.sum(axis=0)
        else:  # the n rows multiply r * h_prev
            d_w_hh[2 * hidden :] = d_rows[:, 2 * hidden :].T @ aux_rows
    return dx, (dh,), (d_w_ih, d_w_hh, d_b_ih, d_b_hh)


def gru_step(variant, x, weights, state0):
    return _one_step(gru_forward, variant, x, weights, state0)


# ------------------------------------------------------------------ vanilla RNN


def rnn_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    """``variant``: ReLU when True, else tanh."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    pre, h_seq, h_prev_seq = buffer("pre", hidden), buffer("h_seq", hidden), buffer("h_prev", hidden)
    activate = rnn_pointwise[bool(variant)]
    steps = _Steps(lengths, x.shape[0], reverse)
    h = state0[0].copy()
    with _quiet():
        _project(x, w_ih, b_ih, pre)
        for s in range(steps.count):
            index, active = steps.at(s)
            h_new = activate(pre[index] + (h @ w_hh.T + b_hh))
            for array, values in ((h_seq, h_new), (h_prev_seq, h), (y, h_new)):
                steps.write(array, index, active, values)
            h = steps.keep(h_new, h, active)
    steps.clear_padding(pre, h_seq, h_prev_seq)
    return (h,), (pre, h_seq, h_prev_seq)


def rnn_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    pre, h_seq, h_prev_seq = buffers
    gradient = rnn_pointwise_backward[bool(variant)]
    steps = _Steps(lengths, x.shape[0], reverse)
    dh = dstate_n[0].copy()
    with _quiet():
        for s in reversed(range(steps.count)):
            index, active = steps.at(s)
            d_pre = gradient(dh + dy[index], h_seq[index])
            steps.write(pre, index, active, d_pre)  # pre holds dA from here on
            dh = steps.keep(d_pre @ w_hh, dh, active)
        dx, d_w_ih, d_b = _input_and_weight_gradients(x, pre, w_ih)
        d_w_hh = _rows(pre).T @ _rows(h_prev_seq)
    return dx, (dh,), (d_w_ih, d_w_hh, d_b, d_b.copy())


def rnn_step(variant, x, weights, state0):
    return _one_step(rnn_forward, variant, x, weights, state0)


#: ``CellFamily.kernel`` -> that kernel family's NumPy calls.
KERNELS = {
    "rnn": FamilyKernels(rnn_forward, rnn_backward, rnn_step),
    "lstm": FamilyKernels(lstm_forward, lstm_backward, lstm_step),
    "gru": FamilyKernels(gru_forward, gru_backward, gru_step),
}
