"""LSTM on the CPU: forward, backward and step kernels (float32 pointwise passes on
SIMD lanes), and the layer calls :class:`~numrnn.backends.cpu.CPUBackend` makes."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from numrnn.backends.protocol import FamilyKernels
from numrnn._jit import OVERLOAD_OPTIONS, cpu_function, cpu_kernel
from numrnn.backends.cpu import activations  # noqa: F401  (registers the float32 activations)
from numrnn.backends.cpu.simd import lane_count, load_lanes, store_lanes
from numrnn.backends.cpu.linalg import copy_block, copy_into, input_gradient, matmul_nt_into, project_inputs, step_product, step_weights, weight_gradients, zero_padding
from numrnn.backends.cpu.threads import block_bounds, time_index
from numrnn.cells import lstm as lstm_cell


lstm_pointwise = cpu_function(lstm_cell.forward)
lstm_pointwise_backward = cpu_function(lstm_cell.backward)


@cpu_function
def lstm_cell_rows(s, lo, pre_x, pre_h, lengths, reverse, h, c, y, c_seq, h_prev_seq):
    """Pointwise part of one LSTM step for rows ``[lo, lo + len(h))``; updates ``h``, ``c``.

    The activated gates i, f, g, o overwrite their input pre-activations in ``pre_x``
    (read before written, element by element): the forward pass keeps one (T, B, 4H)
    array, not two, and one array name lets LLVM vectorise without alias checks.
    """
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            i_g, f_g, g_g, o_g, c_new, h_new = lstm_pointwise(
                pre_x[t, b, j] + pre_h[r, j],
                pre_x[t, b, hidden + j] + pre_h[r, hidden + j],
                pre_x[t, b, 2 * hidden + j] + pre_h[r, 2 * hidden + j],
                pre_x[t, b, 3 * hidden + j] + pre_h[r, 3 * hidden + j],
                c[r, j],
            )
            pre_x[t, b, j] = i_g
            pre_x[t, b, hidden + j] = f_g
            pre_x[t, b, 2 * hidden + j] = g_g
            pre_x[t, b, 3 * hidden + j] = o_g
            h_prev_seq[t, b, j] = h[r, j]
            c_seq[t, b, j] = c_new
            y[t, b, j] = h_new
            h[r, j] = h_new
            c[r, j] = c_new


@cpu_function
def lstm_forward_rows(lo, hi, pre_x, lengths, reverse, w_hh_t, h0, c0, y, c_seq, h_prev_seq, h_n, c_n):
    """Rows ``[lo, hi)`` of :func:`lstm_forward` over the whole sequence."""
    h = h0[lo:hi].copy()
    c = c0[lo:hi].copy()
    pre_h = np.empty((hi - lo, w_hh_t[0].shape[1]), dtype=h0.dtype)
    for s in range(pre_x.shape[0]):
        step_product(h, w_hh_t, pre_h)
        lstm_cell_rows(s, lo, pre_x, pre_h, lengths, reverse, h, c, y, c_seq, h_prev_seq)
    copy_block(h, h_n, lo)
    copy_block(c, c_n, lo)


@cpu_kernel(parallel=True)
def lstm_forward(gates, lengths, reverse, w_hh, h0, c0, y, blocks, c_seq, h_prev_seq):
    """LSTM over a sequence, from the input projection in ``gates`` (T, B, 4H) (made
    by :func:`project_inputs` before: see :func:`layer_forward`); outputs go to
    ``y``. Returns ``(h_n, c_n)``.

    Saved for backward, in caller-owned buffers: ``gates``, the activated i, f, g, o
    blocks (overwriting the projection in place); ``c_seq`` and ``h_prev_seq``
    (T, B, H).  (Backward reads ``c_{t-1}`` from ``c_seq`` and ``c0``: a saved copy
    would cost a quarter of the forward's stores.)
    """
    batch = gates.shape[1]
    pre_x = gates
    w_hh_t = step_weights(np.ascontiguousarray(w_hh.T))
    # c_seq is read only where written; h_prev_seq enters the
    # weight-gradient product on every row, so its padding must hold zeros
    zero_padding(h_prev_seq, lengths)
    h_n = np.empty_like(h0)
    c_n = np.empty_like(c0)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        lstm_forward_rows(
            lo, hi, pre_x, lengths, reverse, w_hh_t, h0, c0, y, c_seq, h_prev_seq, h_n, c_n
        )
    return h_n, c_n


def lstm_backward_units(dh, dy, dc, gates, c, c_prev):
    """Backward pointwise pass of one LSTM row at one step (rows of H or 4H values).

    The gate gradients dA_i, dA_f, dA_g, dA_o overwrite the saved gates in
    ``gates`` and ``dc`` becomes the gradient reaching ``c_prev``; ``dh`` is the
    recurrent gradient, ``dy`` the output's.  Compiled, float32 runs on
    :class:`~numrnn.backends.cpu.simd.Lanes` (LLVM does not vectorise this loop by
    itself: the gate blocks are read and written at offsets it cannot separate),
    float64 one value at a time; both apply :func:`numrnn.cells.lstm.backward`.
    """
    _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, np.intp(0))


@cpu_function
def _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, start):
    """:func:`lstm_backward_units` for the units ``start:``, one at a time."""
    hidden = dh.shape[0]
    for j in range(start, hidden):
        d_i, d_f, d_g, d_o, dc_prev = lstm_pointwise_backward(
            dh[j] + dy[j], dc[j], gates[j], gates[hidden + j], gates[2 * hidden + j], gates[3 * hidden + j], c[j], c_prev[j]
        )
        gates[j] = d_i
        gates[hidden + j] = d_f
        gates[2 * hidden + j] = d_g
        gates[3 * hidden + j] = d_o
        dc[j] = dc_prev


def _lstm_backward_units_lanes(dh, dy, dc, gates, c, c_prev):
    """:func:`lstm_backward_units` a vector of units at a time, then the tail one by one."""
    hidden = dh.shape[0]
    width = lane_count(dh)
    j = 0
    while j + width <= hidden:
        d_i, d_f, d_g, d_o, dc_prev = lstm_pointwise_backward(
            load_lanes(dh, j) + load_lanes(dy, j),
            load_lanes(dc, j),
            load_lanes(gates, j),
            load_lanes(gates, hidden + j),
            load_lanes(gates, 2 * hidden + j),
            load_lanes(gates, 3 * hidden + j),
            load_lanes(c, j),
            load_lanes(c_prev, j),
        )
        store_lanes(gates, j, d_i)
        store_lanes(gates, hidden + j, d_f)
        store_lanes(gates, 2 * hidden + j, d_g)
        store_lanes(gates, 3 * hidden + j, d_o)
        store_lanes(dc, j, dc_prev)
        j += width
    _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, j)


# Not inline="always": Numba compiles an always-inline overload's implementation in
# full to type it, then inlines and compiles its IR again in the caller; called, it is
# compiled once (3 s less of a cold float32 LSTM forward + backward), at the same
# speed (training steps measured side by side) and with the same bits.
@overload(lstm_backward_units, jit_options=OVERLOAD_OPTIONS)
def _lstm_backward_units_overload(dh, dy, dc, gates, c, c_prev):
    if dh.dtype == types.float32:
        return _lstm_backward_units_lanes
    return lambda dh, dy, dc, gates, c, c_prev: _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, np.intp(0))


@cpu_function
def lstm_backward_rows(lo, hi, lengths, reverse, w_hh, dy, dh_n, dc_n, gates, c_seq, c0, dh0, dc0):
    """Rows ``[lo, hi)`` of :func:`lstm_backward` over the whole sequence.

    The pre-activation gradients overwrite the saved gates in ``gates``
    (:func:`lstm_backward_units`); padded positions are zeroed, so ``gates``
    leaves as dA.
    """
    steps = dy.shape[0]
    hidden = dh_n.shape[1]
    for b in range(lo, hi):
        gates[lengths[b] :, b, :] = 0
    dh = dh_n[lo:hi].copy()
    dc = dc_n[lo:hi].copy()
    d_step = np.zeros((hi - lo, 4 * hidden), dtype=dh_n.dtype)
    dh_rec = np.empty((hi - lo, hidden), dtype=dh_n.dtype)
    for s in range(steps - 1, -1, -1):
        for r in range(hi - lo):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            if t < 0:
                d_step[r, :] = 0
                continue
            # c_{t-1}: the cell value of this row's previous step, or c0 at its first
            c_prev = c_seq[time_index(s - 1, lengths[b], reverse), b] if s > 0 else c0[b]
            lstm_backward_units(dh[r], dy[t, b], dc[r], gates[t, b], c_seq[t, b], c_prev)
            copy_into(gates[t, b], d_step[r])
        step_product(d_step, w_hh, dh_rec)
        for r in range(hi - lo):
            if s < lengths[lo + r]:
                copy_into(dh_rec[r], dh[r])
    copy_block(dh, dh0, lo)
    copy_block(dc, dc0, lo)


@cpu_kernel(parallel=True)
def lstm_backward(gates, lengths, reverse, w_hh, dy, dh_n, dc_n, c_seq, c0, blocks):
    """Backward of :func:`lstm_forward` through time; consumes ``gates`` (overwritten
    with the pre-activation gradients dA, from which :func:`layer_backward` then
    takes ``dx`` and the weight gradients).  Returns ``(dh0, dc0)``.
    """
    batch = gates.shape[1]
    dh0 = np.empty_like(dh_n)
    dc0 = np.empty_like(dc_n)
    w_step = step_weights(w_hh)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        lstm_backward_rows(lo, hi, lengths, reverse, w_step, dy, dh_n, dc_n, gates, c_seq, c0, dh0, dc0)
    return dh0, dc0


@cpu_kernel
def lstm_step(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """One LSTM step for every row (B, I) -> new (h, c), each (B, H); nothing saved."""
    h = np.empty_like(h0)
    c = np.empty_like(c0)
    lstm_step_into(x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c)
    return h, c


@cpu_function
def lstm_step_into(x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c):
    """:func:`lstm_step` into given ``h`` and ``c`` (B, H).

    Lean for latency at small B: two dot-form products on the weights as stored
    into one scratch array, then one pass of :func:`numrnn.cells.lstm.forward`
    (:func:`lstm_step_units`) with the biases added on the way.
    """
    batch, hidden = h0.shape
    pre = np.empty((2, batch, 4 * hidden), dtype=h0.dtype)
    matmul_nt_into(x, w_ih, pre[0])
    matmul_nt_into(h0, w_hh, pre[1])
    for r in range(batch):
        lstm_step_units(pre[0, r], pre[1, r], b_ih, b_hh, c0[r], h[r], c[r])


def lstm_step_units(a_x, a_h, b_ih, b_hh, c_prev, h, c):
    """Pointwise pass of one LSTM row at one step: pre-activations ``a_x + a_h +
    b_ih + b_hh`` (rows of 4H) and ``c_prev`` (H) to the new ``h`` and ``c``.
    Compiled, float32 runs on :class:`~numrnn.backends.cpu.simd.Lanes`, float64
    one value at a time (as :func:`lstm_backward_units`)."""
    _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, np.intp(0))


@cpu_function
def _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, start):
    """:func:`lstm_step_units` for the units ``start:``, one at a time."""
    hidden = h.shape[0]
    for j in range(start, hidden):
        f_j, g_j, o_j = hidden + j, 2 * hidden + j, 3 * hidden + j
        _, _, _, _, c_new, h_new = lstm_pointwise(
            a_x[j] + a_h[j] + (b_ih[j] + b_hh[j]),
            a_x[f_j] + a_h[f_j] + (b_ih[f_j] + b_hh[f_j]),
            a_x[g_j] + a_h[g_j] + (b_ih[g_j] + b_hh[g_j]),
            a_x[o_j] + a_h[o_j] + (b_ih[o_j] + b_hh[o_j]),
            c_prev[j],
        )
        h[j] = h_new
        c[j] = c_new


@cpu_function
def _gate_lanes(a_x, a_h, b_ih, b_hh, j):
    """Pre-activations ``j:j+n`` as lanes, added in the scalar pass's order."""
    return load_lanes(a_x, j) + load_lanes(a_h, j) + (load_lanes(b_ih, j) + load_lanes(b_hh, j))


def _lstm_step_units_lanes(a_x, a_h, b_ih, b_hh, c_prev, h, c):
    """:func:`lstm_step_units` a vector of units at a time, then the tail one by one."""
    hidden = h.shape[0]
    width = lane_count(h)
    j = 0
    while j + width <= hidden:
        _, _, _, _, c_new, h_new = lstm_pointwise(
            _gate_lanes(a_x, a_h, b_ih, b_hh, j),
            _gate_lanes(a_x, a_h, b_ih, b_hh, hidden + j),
            _gate_lanes(a_x, a_h, b_ih, b_hh, 2 * hidden + j),
            _gate_lanes(a_x, a_h, b_ih, b_hh, 3 * hidden + j),
            load_lanes(c_prev, j),
        )
        store_lanes(h, j, h_new)
        store_lanes(c, j, c_new)
        j += width
    _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, j)


# Not inline="always", as lstm_backward_units: the first LSTM step() (full and fast
# path, float32) compiled in 15 CPU s instead of 30; step() at the same latency.
@overload(lstm_step_units, jit_options=OVERLOAD_OPTIONS)
def _lstm_step_units_overload(a_x, a_h, b_ih, b_hh, c_prev, h, c):
    if h.dtype == types.float32:
        return _lstm_step_units_lanes
    return lambda a_x, a_h, b_ih, b_hh, c_prev, h, c: _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, np.intp(0))


# The products over all T*B rows (the input projection before the time loop, dx and
# the weight gradients after it) are kernels of their own, called from here rather
# than from inside the drivers: Numba links every kernel a kernel calls into its
# module and optimises the whole again, so called from inside, the product kernels'
# code was compiled again in every cell's forward and backward (a cold-start cost
# of several seconds per cell family; their own parallel loops and results are the
# same either way).


def layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    gates, c_seq, h_prev_seq = buffer("gates", 4 * hidden), buffer("c_seq", hidden), buffer("h_prev", hidden)
    project_inputs(x, w_ih, b_ih + b_hh, gates)
    state_n = lstm_forward(gates, lengths, reverse, w_hh, state0[0], state0[1], y, blocks, c_seq, h_prev_seq)
    # c0, from which backward starts (the caller may change its own)
    return state_n, (gates, c_seq, h_prev_seq, state0[1].copy())


def layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, c_seq, h_prev_seq, c0 = buffers
    dh0, dc0 = lstm_backward(gates, lengths, reverse, w_hh, dy, dstate_n[0], dstate_n[1], c_seq, c0, blocks)
    dx = input_gradient(gates, w_ih)  # gates holds dA now
    return dx, (dh0, dc0), weight_gradients(x, h_prev_seq, gates)


def layer_step(variant, x, weights, state0):
    return lstm_step(x, *weights, state0[0], state0[1])


#: This family's calls, found by :class:`~numrnn.backends.cpu.CPUBackend` through the registry.
KERNELS = FamilyKernels(layer_forward, layer_backward, layer_step)
