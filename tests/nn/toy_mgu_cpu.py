"""The toy minimal gated unit's CPU kernels (:mod:`toy_mgu_cell`), written the way
:mod:`numrnn.backends.cpu` writes a family: ``@njit`` drivers over the cell's scalar
functions (compiled by :func:`numrnn._jit.compile_scalar`), exposed as ``KERNELS``.

Plain loops, one row at a time: a test of the extension seam, not of speed.
"""

from __future__ import annotations

import numba
import numpy as np

import toy_mgu_cell
from numrnn._jit import compile_scalar
from numrnn.backends.protocol import FamilyKernels
from numrnn.cells import sequence

cell_forward = compile_scalar(toy_mgu_cell.forward, "cpu")
cell_backward = compile_scalar(toy_mgu_cell.backward, "cpu")
time_index = compile_scalar(sequence.time_index, "cpu")


@numba.njit
def mgu_forward(x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, y, forget_seq, candidate_seq, a_hn_seq, h_prev_seq):
    """Forward over the sequence; fills ``y`` (T, B, H) and the saved (T, B, H) buffers,
    returns ``h_n`` (B, H)."""
    hidden = h0.shape[1]
    h_n = h0.copy()
    for b in range(x.shape[1]):
        h = h0[b].copy()
        for s in range(lengths[b]):
            t = time_index(s, lengths[b], reverse)
            a_x = w_ih @ x[t, b] + b_ih
            a_h = w_hh @ h + b_hh
            for j in range(hidden):
                h_prev_seq[t, b, j] = h[j]
                a_hn_seq[t, b, j] = a_h[hidden + j]
                f, n, h[j] = cell_forward(a_x[j] + a_h[j], a_x[hidden + j], a_h[hidden + j], h[j])
                forget_seq[t, b, j] = f
                candidate_seq[t, b, j] = n
                y[t, b, j] = h[j]
        h_n[b] = h
    return h_n


@numba.njit
def mgu_backward(x, lengths, reverse, w_ih, w_hh, dy, dh_n, forget_seq, candidate_seq, a_hn_seq, h_prev_seq):
    """BPTT of :func:`mgu_forward`: ``(dx, dh0, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh)``."""
    hidden = dh_n.shape[1]
    dx = np.zeros_like(x)
    dh0 = np.zeros_like(dh_n)
    d_w_ih, d_w_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    d_b_ih = np.zeros(w_ih.shape[0], dtype=x.dtype)
    d_b_hh = np.zeros(w_ih.shape[0], dtype=x.dtype)
    d_a_x = np.zeros(2 * hidden, dtype=x.dtype)
    d_a_h = np.zeros(2 * hidden, dtype=x.dtype)
    for b in range(x.shape[1]):
        dh = dh_n[b].copy()
        for s in range(lengths[b] - 1, -1, -1):
            t = time_index(s, lengths[b], reverse)
            direct = np.empty(hidden, dtype=x.dtype)
            for j in range(hidden):
                d_f, d_n_x, d_n_h, direct[j] = cell_backward(
                    dh[j] + dy[t, b, j], forget_seq[t, b, j], candidate_seq[t, b, j], a_hn_seq[t, b, j], h_prev_seq[t, b, j]
                )
                d_a_x[j], d_a_x[hidden + j] = d_f, d_n_x
                d_a_h[j], d_a_h[hidden + j] = d_f, d_n_h
            dx[t, b] = w_ih.T @ d_a_x
            dh = direct + w_hh.T @ d_a_h
            d_w_ih += np.outer(d_a_x, x[t, b])
            d_w_hh += np.outer(d_a_h, h_prev_seq[t, b])
            d_b_ih += d_a_x
            d_b_hh += d_a_h
        dh0[b] = dh
    return dx, dh0, d_w_ih, d_w_hh, d_b_ih, d_b_hh


def layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    hidden = weights[1].shape[1]
    saved = tuple(buffer(name, hidden) for name in ("forget", "candidate", "a_hn", "h_prev"))
    h_n = mgu_forward(x, lengths, reverse, *weights, state0[0], y, *saved)
    return (h_n,), saved


def layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    dx, dh0, *grads = mgu_backward(x, lengths, reverse, w_ih, w_hh, dy, dstate_n[0], *buffers)
    return dx, (dh0,), tuple(grads)


def layer_step(variant, x, weights, state0):
    steps = np.ones(x.shape[0], dtype=np.int64)
    hidden = weights[1].shape[1]
    buffers = tuple(np.empty((1, x.shape[0], hidden), dtype=x.dtype) for _ in range(4))
    y = np.zeros((1, x.shape[0], hidden), dtype=x.dtype)
    return (mgu_forward(x[None], steps, False, *weights, state0[0], y, *buffers),)


KERNELS = FamilyKernels(layer_forward, layer_backward, layer_step)
