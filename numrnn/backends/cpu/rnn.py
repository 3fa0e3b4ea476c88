"""Elman RNN (tanh or ReLU) on the CPU: forward, backward and step kernels, and the
layer calls :class:`~numrnn.backends.cpu.CPUBackend` makes (``variant`` = ReLU)."""

from __future__ import annotations

import numba
import numpy as np

from numrnn.backends.protocol import FamilyKernels
from numrnn._jit import cpu_function, cpu_kernel
from numrnn.backends.cpu import activations  # noqa: F401  (registers the float32 activations)
from numrnn.backends.cpu.linalg import copy_block, copy_into, input_gradient, project_inputs, step_product, step_projections, step_weights, weight_gradients, zero_padding
from numrnn.backends.cpu.threads import block_bounds, time_index
from numrnn.cells import rnn as rnn_cell


rnn_tanh = cpu_function(rnn_cell.tanh_forward)
rnn_tanh_backward = cpu_function(rnn_cell.tanh_backward)
rnn_relu = cpu_function(rnn_cell.relu_forward)
rnn_relu_backward = cpu_function(rnn_cell.relu_backward)


@cpu_function
def rnn_cell_rows(s, lo, pre_x, pre_h, lengths, reverse, relu, h, h_prev_seq):
    """Pointwise part of one RNN step for rows ``[lo, lo + len(h))``; updates ``h`` in
    place, and each output overwrites its pre-activation in ``pre_x`` (one array read
    and written at the same index, which LLVM vectorises without alias checks)."""
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            a = pre_x[t, b, j] + pre_h[r, j]
            h_new = rnn_relu(a) if relu else rnn_tanh(a)
            h_prev_seq[t, b, j] = h[r, j]
            pre_x[t, b, j] = h_new
            h[r, j] = h_new


@cpu_function
def rnn_forward_rows(lo, hi, y, lengths, reverse, relu, w_hh_t, h0, h_prev_seq, h_n):
    """Rows ``[lo, hi)`` of :func:`rnn_forward` over the whole sequence."""
    h = h0[lo:hi].copy()
    pre_h = np.empty((hi - lo, w_hh_t[0].shape[1]), dtype=h0.dtype)
    for s in range(y.shape[0]):
        step_product(h, w_hh_t, pre_h)
        rnn_cell_rows(s, lo, y, pre_h, lengths, reverse, relu, h, h_prev_seq)
    copy_block(h, h_n, lo)


@cpu_kernel(parallel=True)
def rnn_forward(y, lengths, reverse, relu, w_hh, h0, blocks, h_prev_seq):
    """Elman RNN over a sequence, from the input projection in ``y`` (T, B, H) (made
    by :func:`project_inputs` before: see :func:`layer_forward`); outputs go to ``y``,
    each step's output over its own pre-activation (read first): no (T, B, H)
    scratch.  Saved inputs of each step go to the buffer ``h_prev_seq`` (T, B, H).
    Returns ``h_n``.
    """
    batch = y.shape[1]
    w_hh_t = step_weights(np.ascontiguousarray(w_hh.T))
    zero_padding(h_prev_seq, lengths)
    h_n = np.empty_like(h0)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        rnn_forward_rows(lo, hi, y, lengths, reverse, relu, w_hh_t, h0, h_prev_seq, h_n)
    zero_padding(y, lengths)  # padded positions still hold projections
    return h_n


@cpu_function
def rnn_backward_rows(lo, hi, lengths, reverse, relu, w_hh, dy, dh_n, h_prev_seq, h_last, dh0, d_pre):
    """Rows ``[lo, hi)`` of :func:`rnn_backward` over the whole sequence.

    Each step's pre-activation gradient goes to ``d_pre`` (T, B, H).  The output of
    step ``t``, which the activation's derivative needs, is the input of the row's
    next step (read from ``h_prev_seq`` at that step and carried over), or
    ``h_last`` at its last step.
    """
    steps = dy.shape[0]
    hidden = dh_n.shape[1]
    rows = hi - lo
    dtype = dh_n.dtype
    dh = dh_n[lo:hi].copy()
    out = h_last[lo:hi].copy()
    d_step = np.zeros((rows, hidden), dtype=dtype)
    dh_rec = np.empty((rows, hidden), dtype=dtype)
    for s in range(steps - 1, -1, -1):
        for r in range(rows):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            if t < 0:
                d_step[r, :] = 0
                continue
            for j in range(hidden):
                dh_total = dh[r, j] + dy[t, b, j]
                if relu:
                    d_step[r, j] = rnn_relu_backward(dh_total, out[r, j])
                else:
                    d_step[r, j] = rnn_tanh_backward(dh_total, out[r, j])
            copy_into(d_step[r], d_pre[t, b])
            copy_into(h_prev_seq[t, b], out[r])
        step_product(d_step, w_hh, dh_rec)
        for r in range(rows):
            if s < lengths[lo + r]:
                copy_into(dh_rec[r], dh[r])
    copy_block(dh, dh0, lo)


@cpu_kernel(parallel=True)
def rnn_backward(d_pre, lengths, reverse, relu, w_hh, dy, dh_n, h_prev_seq, h_last, blocks):
    """Backward of :func:`rnn_forward` through time (``h_last`` is a copy of its final
    state); the pre-activation gradients go to the buffer ``d_pre`` (T, B, H).
    Returns ``dh0``.

    The weight gradients are products over all ``T*B`` rows after the time loop
    (:func:`weight_gradients`, called by :func:`layer_backward`), as for the other
    cells, so their summation order depends on the shapes only.
    """
    batch = d_pre.shape[1]
    dh0 = np.empty_like(dh_n)
    w_step = step_weights(w_hh)
    zero_padding(d_pre, lengths)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        rnn_backward_rows(lo, hi, lengths, reverse, relu, w_step, dy, dh_n, h_prev_seq, h_last, dh0, d_pre)
    return dh0


@cpu_kernel
def rnn_step(x, relu, w_ih, w_hh, b_ih, b_hh, h0):
    """One Elman step for every row (B, I) -> new h (B, H); nothing saved."""
    pre_x, pre_h, lengths = step_projections(x, w_ih, w_hh, b_ih + b_hh, h0)
    h = h0.copy()
    scratch = np.empty((1,) + h0.shape, dtype=h0.dtype)
    rnn_cell_rows(0, 0, pre_x, pre_h, lengths, False, relu, h, scratch)
    return h


# The products over all T*B rows are called from here, not from inside the drivers
# (a cold-start cost: see the note in numrnn.backends.cpu.lstm).


def layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    h_prev_seq = buffer("h_prev", hidden)
    project_inputs(x, w_ih, b_ih + b_hh, y)
    h_n = rnn_forward(y, lengths, reverse, variant, w_hh, state0[0], blocks, h_prev_seq)
    # h_n is returned: the caller may change it; backward's scratch for dA
    return (h_n,), (h_prev_seq, h_n.copy(), buffer("d_pre", hidden))


def layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    h_prev_seq, h_last, d_pre = buffers
    dh0 = rnn_backward(d_pre, lengths, reverse, variant, w_hh, dy, dstate_n[0], h_prev_seq, h_last, blocks)
    return input_gradient(d_pre, w_ih), (dh0,), weight_gradients(x, h_prev_seq, d_pre)


def layer_step(variant, x, weights, state0):
    return (rnn_step(x, variant, *weights, state0[0]),)


#: This family's calls, found by :class:`~numrnn.backends.cpu.CPUBackend` through the registry.
KERNELS = FamilyKernels(layer_forward, layer_backward, layer_step)
