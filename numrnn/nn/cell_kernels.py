"""One-step compiled kernels of the trainable cells (:mod:`numrnn.nn.cells`), built from the CPU backend's pieces."""

from __future__ import annotations

import numpy as np

from numrnn._jit import cpu_function, cpu_kernel
from numrnn.backends.cpu import (
    column_sums,
    gru_backward_rows,
    gru_fold_biases,
    gru_gates_rows,
    gru_update_rows,
    lstm_backward_rows,
    lstm_cell_rows,
    matmul_nt_into,
    product_into,
    rnn_backward_rows,
    rnn_cell_rows,
)
from numrnn.backends.cpu.simd import lane_count

__all__ = [
    "BLAS_MIN_ROWS",
    "BLAS_THREADS_MIN_WORK",
    "rnn_cell_forward",
    "rnn_cell_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "gru_cell_forward",
    "gru_cell_backward",
]


# ------------------------------------------------------------------ one-step kernels
#
# One compiled call per cell call and per backward, built from the CPU backend's own
# compiled pieces: the products of its streaming step (as step_projections: dot form on
# the weights as stored, or BLAS for larger batches) and the per-step pointwise drivers
# of its sequence kernels (lstm_cell_rows, gru_gates_rows, ... which apply the formulas
# of numrnn.cells), run on sequences of one step.  The buffers they fill are the ones the sequence drivers
# save, and the backward row drivers (lstm_backward_rows, ...) read them as they do in a
# layer's backward.  What the sequence drivers add around these pieces is left out
# because one step does not pay for it: the transposed and packed copies of the weights
# (made once per sequence; for one step they cost more than the step, e.g. 0.7 ms for a
# 256-unit LSTM at B = 1) and the parallel row chunks of the weight gradients.

#: From this many rows (B) on, the forward products ``x W_ih^T`` and ``h W_hh^T`` run as
#: one BLAS call each, on the weights as stored (transposed by flag, not copied); below,
#: in the streaming step's dot form.  Measured here (float32, one thread): equal at
#: B = 8, BLAS twice as fast from B = 32 ((32, 64) @ (64, 512): 21 against 36 us).
BLAS_MIN_ROWS = 16

#: Above this many multiply-adds in one product, OpenBLAS splits it over threads; calls
#: with such products run inside :func:`numrnn.backends.cpu.single_threaded_blas`, as
#: the layers do (here BLAS's own threads made a (64, 128) -> 256 LSTM cell's backward
#: four times slower).  Smaller products run on the calling thread anyway, and skip the
#: context's cost (about 3.5 us).
BLAS_THREADS_MIN_WORK = 1 << 18


@cpu_function
def _product_nt(a, w, out):
    """``out[...] = a @ w.T`` (``w`` as stored, C-contiguous): BLAS from
    :data:`BLAS_MIN_ROWS` rows on, else dot form (:func:`numrnn.backends.cpu.matmul_nt_into`)."""
    if a.shape[0] >= BLAS_MIN_ROWS:
        np.dot(a, w.T, out)
    else:
        matmul_nt_into(a, w, out)


@cpu_function
def _projections(x, w_ih, w_rec, bias, h):
    """:func:`numrnn.backends.cpu.step_projections` with :func:`_product_nt`'s products:
    ``(pre_x (1, B, G*H) with the bias, pre_h (B, rows of w_rec), lengths)``."""
    batch = x.shape[0]
    pre_x = np.empty((1, batch, w_ih.shape[0]), dtype=h.dtype)
    _product_nt(x, w_ih, pre_x[0])
    pre_x[0] += bias
    pre_h = np.empty((batch, w_rec.shape[0]), dtype=h.dtype)
    _product_nt(h, w_rec, pre_h)
    return pre_x, pre_h, np.ones(batch, dtype=np.int64)


@cpu_function
def _unpacked(w):
    """``w`` as the step-weights pair of :func:`numrnn.backends.cpu.step_weights`
    without packed panels, so that :func:`~numrnn.backends.cpu.step_product` multiplies
    by ``w`` as stored (packing would cost more than the one product it serves)."""
    return w, np.empty((0, w.shape[0], 2 * lane_count(w[0])), dtype=w.dtype)


@cpu_function
def _weight_gradients(d_pre, x, h_prev):
    """``(d_pre^T x, d_pre^T h_prev, column sums of d_pre)`` for one step's (B, G*H)
    pre-activation gradients: :func:`numrnn.backends.cpu.weight_gradients` for one row
    chunk."""
    d_w_ih = np.empty((d_pre.shape[1], x.shape[1]), dtype=d_pre.dtype)
    d_w_hh = np.empty((d_pre.shape[1], h_prev.shape[1]), dtype=d_pre.dtype)
    product_into(d_pre.T, x, d_w_ih)
    product_into(d_pre.T, h_prev, d_w_hh)
    return d_w_ih, d_w_hh, column_sums(d_pre)


@cpu_function
def _input_gradient(d_pre, w_ih):
    """``dx = d_pre @ w_ih`` for one step: (B, G*H) -> (B, I)."""
    dx = np.empty((d_pre.shape[0], w_ih.shape[1]), dtype=d_pre.dtype)
    product_into(d_pre, w_ih, dx)
    return dx


@cpu_kernel
def rnn_cell_forward(x, relu, w_ih, w_hh, b_ih, b_hh, h0):
    """One Elman step (B, I) -> ``(h, h_prev_seq)``: the new state (B, H) and, for
    :func:`rnn_cell_backward`, the previous one as a (1, B, H) sequence."""
    pre_x, pre_h, lengths = _projections(x, w_ih, w_hh, b_ih + b_hh, h0)
    h = h0.copy()
    h_prev_seq = np.empty((1,) + h0.shape, dtype=h0.dtype)
    rnn_cell_rows(0, 0, pre_x, pre_h, lengths, False, relu, h, h_prev_seq)
    return h, h_prev_seq


@cpu_kernel
def rnn_cell_backward(x, relu, w_ih, w_hh, dh, h_prev_seq, h):
    """Backward of :func:`rnn_cell_forward` (``h`` its output): ``(dx, dh0, d_weight_ih,
    d_weight_hh, d_bias)`` (the bias gradient is that of both biases)."""
    batch = x.shape[0]
    lengths = np.ones(batch, dtype=np.int64)
    dy = np.zeros((1,) + dh.shape, dtype=dh.dtype)
    dh0 = np.empty_like(dh)
    d_pre = np.empty((1,) + dh.shape, dtype=dh.dtype)
    rnn_backward_rows(0, batch, lengths, False, relu, _unpacked(w_hh), dy, dh, h_prev_seq, h, dh0, d_pre)
    d_w_ih, d_w_hh, d_b = _weight_gradients(d_pre[0], x, h_prev_seq[0])
    return _input_gradient(d_pre[0], w_ih), dh0, d_w_ih, d_w_hh, d_b


@cpu_kernel
def lstm_cell_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """One LSTM step (B, I) -> ``(h, c, gates, c_seq, h_prev_seq)``: the new state and, for
    :func:`lstm_cell_backward`, the activated gates (1, B, 4H), ``c`` and ``h_{t-1}``
    as (1, B, H) sequences, as :func:`numrnn.backends.cpu.lstm_forward` saves them."""
    gates, pre_h, lengths = _projections(x, w_ih, w_hh, b_ih + b_hh, h0)
    h = h0.copy()
    c = c0.copy()
    shape = (1,) + h0.shape
    y = np.empty(shape, dtype=h0.dtype)
    c_seq = np.empty(shape, dtype=h0.dtype)
    h_prev_seq = np.empty(shape, dtype=h0.dtype)
    lstm_cell_rows(0, 0, gates, pre_h, lengths, False, h, c, y, c_seq, h_prev_seq)
    return h, c, gates, c_seq, h_prev_seq


@cpu_kernel
def lstm_cell_backward(x, w_ih, w_hh, dh, dc, gates, c_seq, h_prev_seq, c0):
    """Backward of :func:`lstm_cell_forward` (``c0`` its input cell state); consumes
    ``gates``.  Returns ``(dx, dh0, dc0, d_weight_ih, d_weight_hh, d_bias)``."""
    batch = x.shape[0]
    lengths = np.ones(batch, dtype=np.int64)
    dy = np.zeros((1,) + dh.shape, dtype=dh.dtype)
    dh0 = np.empty_like(dh)
    dc0 = np.empty_like(dc)
    lstm_backward_rows(0, batch, lengths, False, _unpacked(w_hh), dy, dh, dc, gates, c_seq, c0, dh0, dc0)
    d_pre = gates[0]
    d_w_ih, d_w_hh, d_b = _weight_gradients(d_pre, x, h_prev_seq[0])
    return _input_gradient(d_pre, w_ih), dh0, dc0, d_w_ih, d_w_hh, d_b


@cpu_kernel
def gru_cell_forward(x, reset_after, w_ih, w_hh, b_ih, b_hh, h0):
    """One GRU step, either form (B, I) -> ``(h, gates, h_prev_seq, aux_seq)``: the new
    state and, for :func:`gru_cell_backward`, what :func:`numrnn.backends.cpu.gru_forward`
    saves (r, z, n (1, B, 3H); ``h_{t-1}`` and ``W_hn h + b_hn`` or ``r * h_{t-1}``)."""
    hidden = h0.shape[1]
    bias, b_hn = gru_fold_biases(b_ih, b_hh)
    w_rec = w_hh if reset_after else w_hh[: 2 * hidden]
    gates, pre_h, lengths = _projections(x, w_ih, w_rec, bias, h0)
    h = h0.copy()
    shape = (1,) + h0.shape
    y = np.empty(shape, dtype=h0.dtype)
    h_prev_seq = np.empty(shape, dtype=h0.dtype)
    aux_seq = np.empty(shape, dtype=h0.dtype)
    reset_h = np.empty_like(h0)
    pre_hn = np.empty_like(h0)
    gru_gates_rows(0, 0, gates, pre_h, lengths, False, h, reset_h)
    if not reset_after:
        _product_nt(reset_h, w_hh[2 * hidden :], pre_hn)
    gru_update_rows(0, 0, gates, pre_h, pre_hn, b_hn, lengths, False, reset_after, h, reset_h, y, h_prev_seq, aux_seq)
    return h, gates, h_prev_seq, aux_seq


@cpu_kernel
def gru_cell_backward(x, reset_after, w_ih, w_hh, dh, gates, h_prev_seq, aux_seq):
    """Backward of :func:`gru_cell_forward`; consumes ``gates`` and ``aux_seq`` (as
    :func:`numrnn.backends.cpu.gru_backward`, whose weight-gradient rows it follows).
    Returns ``(dx, dh0, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh)``."""
    batch = x.shape[0]
    hidden = dh.shape[1]
    lengths = np.ones(batch, dtype=np.int64)
    dy = np.zeros((1,) + dh.shape, dtype=dh.dtype)
    dh0 = np.empty_like(dh)
    w_rec = _unpacked(w_hh if reset_after else np.ascontiguousarray(w_hh[: 2 * hidden]))
    w_hn = _unpacked(np.ascontiguousarray(w_hh[2 * hidden :]))
    gru_backward_rows(0, batch, lengths, False, reset_after, w_rec, w_hn, dy, dh, gates, h_prev_seq, aux_seq, dh0)
    d_pre = gates[0]
    aux = aux_seq[0]
    h_prev = h_prev_seq[0]
    d_w_ih, d_w_hh, d_b_ih = _weight_gradients(d_pre, x, h_prev)
    d_b_hh = d_b_ih.copy()
    d_w_hn = np.empty((hidden, hidden), dtype=dh.dtype)
    # the n rows of weight_hh: the W_hn gradient of numrnn.cells.gru's docstring, in either form
    if reset_after:
        # the n rows of the h side: gradient dA_n * r (now in aux_seq) against h_prev
        product_into(aux.T, h_prev, d_w_hn)
        d_b_hh[2 * hidden :] = column_sums(aux)
    else:
        # Cho form: the n rows of W_hh multiply r * h_prev (saved in aux_seq), not h_prev
        product_into(np.ascontiguousarray(d_pre[:, 2 * hidden :]).T, aux, d_w_hn)
    d_w_hh[2 * hidden :] = d_w_hn
    return _input_gradient(d_pre, w_ih), dh0, d_w_ih, d_w_hh, d_b_ih, d_b_hh
