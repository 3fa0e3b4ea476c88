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
as in the compiled kernels.  Measured on a 2-core machine: a float32 LSTM forward +
backward at (T, B, I, H) = (24, 32, 1, 32) takes about 1.3 ms here, against 0.2 ms
compiled; the first default ``Forecaster`` fit on airline 5.7 CPU s, against 2.4 s
compiled and warm (README, First run).

Results agree with the compiled kernels to rounding (products summed in another
order; float32 ``tanh`` exact here, a 3e-7 approximation there; ``sigmoid`` as
``(1 + tanh(x / 2)) / 2`` in float32 on both), not bit for bit:
``tests/backends/cpu/test_numpy_kernels.py`` holds them to 2e-5 (float32) and 1e-12
(float64), and to central differences.
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

    A step is one time index for every row (plain slices) unless the lengths differ and
    the direction is ``reverse``: then reads gather each row's time index and writes
    touch the active rows only.  In the forward direction, rows past their length compute
    on at their padded positions, which the drivers zero afterwards
    (:meth:`clear_padding`); their state is held (:meth:`keep`).  Slices made the first
    fit of a ``GlobalForecaster`` on 50 ragged series 1.5x faster than gathers (17.9
    against 26.4 CPU s).
    """

    def __init__(self, lengths, steps, reverse):
        self.lengths = lengths
        self.steps = steps
        self.reverse = reverse
        self.uniform = bool(np.all(lengths == steps))
        self.count = steps if self.uniform else int(lengths.max())
        self.all_active = steps if self.uniform else int(lengths.min())  # steps before any row stops
        self.rows = np.arange(len(lengths))

    def at(self, s):
        """``(index, active)``: ``array[index]`` is the (B, F) slab of step ``s``;
        ``active`` the (B,) mask of active rows, None when all are."""
        if self.uniform:
            return (self.steps - 1 - s if self.reverse else s), None
        active = None if s < self.all_active else s < self.lengths
        if not self.reverse:
            return s, active
        t = self.lengths - 1 - s if active is None else np.where(active, self.lengths - 1 - s, 0)
        return (t, self.rows), active

    @staticmethod
    def write(array, index, active, values):
        if active is None or type(index) is not tuple:
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


def _quiet():
    """The compiled kernels' error model: overflow to inf and NaN without warnings."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _forward_driver(x, lengths, reverse, w_ih, bias, pre, state0, y, saved, step):
    """The time loop of every family's forward.

    ``pre`` (T, B, G*H) gets the input projection ``x W_ih^T + bias``; then, step by
    step, ``step(pre_t, state) -> (new state tuple, writes)`` with ``pre_t`` the (B, G*H)
    rows of the step and ``writes`` the ``(array, values)`` pairs to store at the step's
    positions; ``y`` gets the new ``h``.  Padded positions of the ``saved`` arrays end as
    zero.  Returns the final state.
    """
    steps = _Steps(lengths, x.shape[0], reverse)
    state = tuple(s.copy() for s in state0)
    with _quiet():
        _project(x, w_ih, bias, pre)
        for s in range(steps.count):
            index, active = steps.at(s)
            new_state, writes = step(pre[index], state)
            steps.write(y, index, active, new_state[0])
            for array, values in writes:
                steps.write(array, index, active, values)
            state = tuple(steps.keep(new, old, active) for new, old in zip(new_state, state))
    steps.clear_padding(y, *saved)
    return state


def _backward_driver(x, lengths, reverse, dy, dstate_n, step):
    """The time loop of every family's backward, last step first:
    ``step(index, dh, dstate) -> (dstate before the step, writes)``, with ``dh`` the total
    gradient reaching the step's ``h`` and ``index`` its positions (as in
    :func:`_forward_driver`).  Returns the gradient of the initial state."""
    steps = _Steps(lengths, x.shape[0], reverse)
    dstate = tuple(d.copy() for d in dstate_n)
    written = {}
    with _quiet():
        for s in reversed(range(steps.count)):
            index, active = steps.at(s)
            new_dstate, writes = step(index, dstate[0] + dy[index], dstate)
            for array, values in writes:
                steps.write(array, index, active, values)
                written[id(array)] = array
            dstate = tuple(steps.keep(new, old, active) for new, old in zip(new_dstate, dstate))
    steps.clear_padding(*written.values())  # the gradients rows past their length computed
    return dstate


def one_step_forward(forward, variant, x, weights, state0):
    """``forward`` (a family's) on a sequence of one timestep ``x`` (B, I): what a cell
    call or a ``step()`` runs on first use; returns ``(state_n, saved buffers)``."""
    batch, hidden = x.shape[0], weights[1].shape[1]
    y = np.zeros((1, batch, hidden), dtype=x.dtype)
    return forward(variant, x[None], np.ones(batch, dtype=np.int64), False, weights, state0, y,
                   lambda name, features: np.empty((1, batch, features), dtype=x.dtype), None)


def one_step_backward(backward, variant, x, w_ih, w_hh, buffers, dstate):
    """Backward of :func:`one_step_forward`, ``dstate`` reaching its state:
    ``(dx (B, I), dstate0, (d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh))``."""
    no_output_gradient = np.zeros((1, x.shape[0], w_hh.shape[1]), dtype=x.dtype)
    dx, dstate0, grads = backward(variant, x[None], np.ones(x.shape[0], dtype=np.int64), False, w_ih, w_hh,
                                  buffers, no_output_gradient, dstate, None)
    return dx[0], dstate0, grads


def _family_kernels(forward, backward):
    """The :class:`FamilyKernels` of ``forward`` and ``backward``: ``step`` is the forward
    of one timestep, saving nothing."""

    def step(variant, x, weights, state0):
        return one_step_forward(forward, variant, x, weights, state0)[0]

    return FamilyKernels(forward, backward, step)


# ------------------------------------------------------------------ LSTM


def lstm_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    gates, c_seq = buffer("gates", 4 * hidden), buffer("c_seq", hidden)
    c_prev_seq, h_prev_seq = buffer("c_prev", hidden), buffer("h_prev", hidden)

    def step(a_x, state):
        h, c = state
        a = a_x + h @ w_hh.T
        i, f, g, o, c_new, h_new = lstm_pointwise(
            a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 2 * hidden : 3 * hidden], a[:, 3 * hidden :], c)
        a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 2 * hidden : 3 * hidden], a[:, 3 * hidden :] = i, f, g, o
        return (h_new, c_new), ((gates, a), (c_seq, c_new), (c_prev_seq, c), (h_prev_seq, h))

    saved = (gates, c_seq, c_prev_seq, h_prev_seq)
    return _forward_driver(x, lengths, reverse, w_ih, b_ih + b_hh, gates, state0, y, saved, step), saved


def lstm_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, c_seq, c_prev_seq, h_prev_seq = buffers
    hidden = w_hh.shape[1]

    def step(index, dh, dstate):
        g = gates[index]
        d_i, d_f, d_g, d_o, dc_prev = lstm_pointwise_backward(
            dh, dstate[1], g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden : 3 * hidden],
            g[:, 3 * hidden :], c_seq[index], c_prev_seq[index])
        d_a = np.concatenate((d_i, d_f, d_g, d_o), axis=1)
        return (d_a @ w_hh, dc_prev), ((gates, d_a),)  # gates holds dA from here on

    dstate0 = _backward_driver(x, lengths, reverse, dy, dstate_n, step)
    with _quiet():
        dx, d_w_ih, d_b = _input_and_weight_gradients(x, gates, w_ih)
        d_w_hh = _rows(gates).T @ _rows(h_prev_seq)
    return dx, dstate0, (d_w_ih, d_w_hh, d_b, d_b.copy())


# ------------------------------------------------------------------ GRU


def gru_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    """``variant``: reset-after (PyTorch) when True, else the Cho et al. form."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    gates, h_prev_seq, aux_seq = buffer("gates", 3 * hidden), buffer("h_prev", hidden), buffer("aux", hidden)
    bias, b_hn = gru_cell.fold_biases(b_ih, b_hh)
    w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]

    def step(a, state):
        h = state[0]
        a_h = h @ (w_hh if variant else w_rz).T
        r, z = gru_gates(a[:, :hidden] + a_h[:, :hidden], a[:, hidden : 2 * hidden] + a_h[:, hidden : 2 * hidden])
        if variant:
            aux = a_h[:, 2 * hidden :] + b_hn  # W_hn h_prev + b_hn
            a_n = gru_candidate_reset_after(a[:, 2 * hidden :], r, aux)
        else:
            aux = gru_reset_hidden(r, h)  # r * h_prev
            a_n = gru_candidate_reset_before(a[:, 2 * hidden :], aux @ w_n.T, b_hn)
        n, h_new = gru_candidate_update(a_n, z, h)
        return (h_new,), ((gates, np.concatenate((r, z, n), axis=1)), (aux_seq, aux), (h_prev_seq, h))

    saved = (gates, h_prev_seq, aux_seq)
    return _forward_driver(x, lengths, reverse, w_ih, bias, gates, state0, y, saved, step), saved


def gru_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, h_prev_seq, aux_seq = buffers
    hidden = w_hh.shape[1]
    w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden :]

    def step(index, dh, dstate):
        g, h_prev, aux = gates[index], h_prev_seq[index], aux_seq[index]
        r, z, n = g[:, :hidden], g[:, hidden : 2 * hidden], g[:, 2 * hidden :]
        d_a_n, d_z, dh_prev = gru_candidate_update_backward(dh, z, n, h_prev)
        if variant:
            d_r, d_aux = gru_candidate_reset_after_backward(d_a_n, r, aux)  # d_aux: the h side of the n rows
            d_a_r, d_a_z = gru_gates_backward(d_r, d_z, r, z)
            dh_prev = dh_prev + np.concatenate((d_a_r, d_a_z, d_aux), axis=1) @ w_hh
            writes = ((aux_seq, d_aux),)  # aux_seq holds the n rows' h-side dA from here on
        else:
            d_r, dh_reset = gru_reset_hidden_backward(d_a_n @ w_n, r, h_prev)
            d_a_r, d_a_z = gru_gates_backward(d_r, d_z, r, z)
            dh_prev = dh_prev + dh_reset + np.concatenate((d_a_r, d_a_z), axis=1) @ w_rz
            writes = ()
        return (dh_prev,), writes + ((gates, np.concatenate((d_a_r, d_a_z, d_a_n), axis=1)),)  # dA, x side

    dstate0 = _backward_driver(x, lengths, reverse, dy, dstate_n, step)
    with _quiet():
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
    return dx, dstate0, (d_w_ih, d_w_hh, d_b_ih, d_b_hh)


# ------------------------------------------------------------------ vanilla RNN


def rnn_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    """``variant``: ReLU when True, else tanh."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    pre, h_seq, h_prev_seq = buffer("pre", hidden), buffer("h_seq", hidden), buffer("h_prev", hidden)
    activate = rnn_pointwise[bool(variant)]

    def step(a, state):
        h_new = activate(a + (state[0] @ w_hh.T + b_hh))
        return (h_new,), ((h_seq, h_new), (h_prev_seq, state[0]))

    saved = (pre, h_seq, h_prev_seq)
    return _forward_driver(x, lengths, reverse, w_ih, b_ih, pre, state0, y, saved, step), saved


def rnn_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    pre, h_seq, h_prev_seq = buffers
    gradient = rnn_pointwise_backward[bool(variant)]

    def step(index, dh, dstate):
        d_pre = gradient(dh, h_seq[index])
        return (d_pre @ w_hh,), ((pre, d_pre),)  # pre holds dA from here on

    dstate0 = _backward_driver(x, lengths, reverse, dy, dstate_n, step)
    with _quiet():
        dx, d_w_ih, d_b = _input_and_weight_gradients(x, pre, w_ih)
        d_w_hh = _rows(pre).T @ _rows(h_prev_seq)
    return dx, dstate0, (d_w_ih, d_w_hh, d_b, d_b.copy())


#: ``CellFamily.kernel`` -> that kernel family's NumPy calls.
KERNELS = {
    "rnn": _family_kernels(rnn_forward, rnn_backward),
    "lstm": _family_kernels(lstm_forward, lstm_backward),
    "gru": _family_kernels(gru_forward, gru_backward),
}
