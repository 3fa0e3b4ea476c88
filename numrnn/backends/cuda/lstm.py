"""LSTM recurrence kernels of the CUDA backend: forward and backward over a whole sequence.

Kernel design (blocks own a batch slice, barriers per step) in
:mod:`numrnn.backends.cuda`; the pointwise math is the scalar functions of
:mod:`numrnn.cells.lstm` compiled as device functions.  Each kernel's parameters
are declared once (:data:`FORWARD_PARAMS`, :data:`BACKWARD_PARAMS`): the launches
below name their arguments through :func:`~numrnn.backends.cuda.common.arguments`
and the PTX check types them with :func:`~numrnn.backends.cuda.common.argtypes`.
What forward saves is one :data:`Saved` record.
"""

from __future__ import annotations

import collections
import functools

import numba
import numpy as np
from numba import cuda

from numrnn._jit import cuda_device
from numrnn.backends.cuda.common import arguments, params, time_index
from numrnn.backends.cuda.elementwise import empty
from numrnn.cells import lstm as lstm_cell

lstm_pointwise = cuda_device(lstm_cell.forward)
lstm_pointwise_backward = cuda_device(lstm_cell.backward)


#: what the forward kernel saves for backward, each (T, B, 4H) or (T, B, H)
Saved = collections.namedtuple("LSTMSaved", "gates c_seq h_prev_seq c_prev_seq")

FORWARD_PARAMS = params("pre_x:C3 w_t:C2 lengths:L reverse:B h0:C2 c0:C2 y:A3 h_n:C2 c_n:C2 "
                        "gates:C3 c_seq:C3 h_prev_seq:C3 c_prev_seq:C3")
BACKWARD_PARAMS = params("dy:A3 w_hh:C2 lengths:L reverse:B dh_n:C2 dc_n:C2 gates:C3 c_seq:C3 c_prev_seq:C3 "
                         "d_pre:C3 dh0:C2 dc0:C2")


def shared_values(variant, tile, hidden, forward):
    """Dynamic shared-memory elements of one block: the h double buffer, or the gate gradients."""
    return (2 if forward else 4) * tile * hidden


def folded_rows(variant, hidden):
    """How many leading rows of ``b_hh`` fold into the input projection's bias: all of them."""
    return 4 * hidden


@functools.lru_cache(maxsize=None)
def forward_kernel(dtype_name, tile):
    """The compiled :func:`lstm_forward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def lstm_forward(pre_x, w_t, lengths, reverse, h0, c0, y, h_n, c_n, gates, c_seq, h_prev_seq, c_prev_seq):
        """LSTM over the sequence; ``w_t`` is ``W_hh^T`` (H, 4H); ``c_n`` holds the running c."""
        steps, batch, hidden = pre_x.shape[0], pre_x.shape[1], h0.shape[1]
        h_buf = cuda.shared.array(0, float_t)  # [2][tile][hidden]
        acc_i = cuda.local.array(tile, float_t)
        acc_f = cuda.local.array(tile, float_t)
        acc_g = cuda.local.array(tile, float_t)
        acc_o = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        half = tile * hidden
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                value = float_t(0)
                if b < batch:
                    value = h0[b, j]
                    c_n[b, j] = c0[b, j]
                h_buf[bl * hidden + j] = value
        cuda.syncthreads()
        for s in range(steps):
            cur = (s % 2) * half
            nxt = half - cur
            for j in range(tid, hidden, threads):
                for bl in range(tile):
                    b = b0 + bl
                    t = -1
                    if b < batch:
                        t = time_index(s, lengths[b], reverse)
                    if t >= 0:
                        acc_i[bl] = pre_x[t, b, j]
                        acc_f[bl] = pre_x[t, b, hidden + j]
                        acc_g[bl] = pre_x[t, b, 2 * hidden + j]
                        acc_o[bl] = pre_x[t, b, 3 * hidden + j]
                    else:
                        acc_i[bl] = 0
                        acc_f[bl] = 0
                        acc_g[bl] = 0
                        acc_o[bl] = 0
                for k in range(hidden):
                    w_i = w_t[k, j]
                    w_f = w_t[k, hidden + j]
                    w_g = w_t[k, 2 * hidden + j]
                    w_o = w_t[k, 3 * hidden + j]
                    for bl in range(tile):
                        h_k = h_buf[cur + bl * hidden + k]
                        acc_i[bl] += w_i * h_k
                        acc_f[bl] += w_f * h_k
                        acc_g[bl] += w_g * h_k
                        acc_o[bl] += w_o * h_k
                for bl in range(tile):
                    b = b0 + bl
                    if b >= batch:
                        continue
                    t = time_index(s, lengths[b], reverse)
                    h_old = h_buf[cur + bl * hidden + j]
                    if t < 0:  # inactive: keep the state, zero the (inactive) position s
                        h_buf[nxt + bl * hidden + j] = h_old
                        y[s, b, j] = 0
                        for g in range(4):
                            gates[s, b, g * hidden + j] = 0
                        c_seq[s, b, j] = 0
                        h_prev_seq[s, b, j] = 0
                        c_prev_seq[s, b, j] = 0
                        continue
                    c_old = c_n[b, j]
                    i_g, f_g, g_g, o_g, c_new, h_new = lstm_pointwise(acc_i[bl], acc_f[bl], acc_g[bl], acc_o[bl], c_old)
                    gates[t, b, j] = i_g
                    gates[t, b, hidden + j] = f_g
                    gates[t, b, 2 * hidden + j] = g_g
                    gates[t, b, 3 * hidden + j] = o_g
                    h_prev_seq[t, b, j] = h_old
                    c_prev_seq[t, b, j] = c_old
                    c_seq[t, b, j] = c_new
                    y[t, b, j] = h_new
                    h_buf[nxt + bl * hidden + j] = h_new
                    c_n[b, j] = c_new
            cuda.syncthreads()
        final = (steps % 2) * half
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    h_n[b, j] = h_buf[final + bl * hidden + j]

    return cuda.jit(lstm_forward)


@functools.lru_cache(maxsize=None)
def backward_kernel(dtype_name, tile):
    """The compiled :func:`lstm_backward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def lstm_backward(dy, w_hh, lengths, reverse, dh_n, dc_n, gates, c_seq, c_prev_seq, d_pre, dh0, dc0):
        """Backward of :func:`lstm_forward`; ``dh0``/``dc0`` hold the running dh, dc."""
        steps, batch, hidden = dy.shape[0], dy.shape[1], dh_n.shape[1]
        width = 4 * hidden
        d_step = cuda.shared.array(0, float_t)  # [tile][4 hidden]
        acc = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        for idx in range(tid, tile * width, threads):
            d_step[idx] = 0
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    dh0[b, j] = dh_n[b, j]
                    dc0[b, j] = dc_n[b, j]
        cuda.syncthreads()
        for s in range(steps - 1, -1, -1):
            for j in range(tid, hidden, threads):
                for bl in range(tile):
                    b = b0 + bl
                    if b >= batch:
                        continue
                    t = time_index(s, lengths[b], reverse)
                    row = bl * width
                    if t < 0:
                        for g in range(4):
                            d_pre[s, b, g * hidden + j] = 0
                            d_step[row + g * hidden + j] = 0
                        continue
                    d_i, d_f, d_g, d_o, dc_prev = lstm_pointwise_backward(
                        dh0[b, j] + dy[t, b, j],
                        dc0[b, j],
                        gates[t, b, j],
                        gates[t, b, hidden + j],
                        gates[t, b, 2 * hidden + j],
                        gates[t, b, 3 * hidden + j],
                        c_seq[t, b, j],
                        c_prev_seq[t, b, j],
                    )
                    d_pre[t, b, j] = d_i
                    d_pre[t, b, hidden + j] = d_f
                    d_pre[t, b, 2 * hidden + j] = d_g
                    d_pre[t, b, 3 * hidden + j] = d_o
                    d_step[row + j] = d_i
                    d_step[row + hidden + j] = d_f
                    d_step[row + 2 * hidden + j] = d_g
                    d_step[row + 3 * hidden + j] = d_o
                    dc0[b, j] = dc_prev
            cuda.syncthreads()
            for k in range(tid, hidden, threads):
                for bl in range(tile):
                    acc[bl] = 0
                for gj in range(width):
                    w = w_hh[gj, k]
                    for bl in range(tile):
                        acc[bl] += d_step[bl * width + gj] * w
                for bl in range(tile):
                    b = b0 + bl
                    if b < batch and s < lengths[b]:
                        dh0[b, k] = acc[bl]
            cuda.syncthreads()

    return cuda.jit(lstm_backward)


def forward(variant, launch, pre_x, w_t, b_hh, lengths, reverse, state0, y):
    """Launch the forward kernel; returns ``(state_n, saved)``.

    ``launch`` is ``(grid, threads, shared bytes, tile)``; ``pre_x`` (T, B, 4H) the input
    projection with the folded bias, ``w_t`` (H, 4H) ``W_hh^T``, ``state0`` ``(h0, c0)``
    each (B, H), ``y`` (T, B, H) written in place.
    """
    grid, threads, shared, tile = launch
    steps, batch, width = pre_x.shape
    hidden, dtype = w_t.shape[0], pre_x.dtype
    h_n, c_n = empty((batch, hidden), dtype), empty((batch, hidden), dtype)
    saved = Saved(empty((steps, batch, width), dtype), *(empty((steps, batch, hidden), dtype) for _ in range(3)))
    forward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        FORWARD_PARAMS, pre_x=pre_x, w_t=w_t, lengths=lengths, reverse=reverse, h0=state0[0], c0=state0[1],
        y=y, h_n=h_n, c_n=c_n, **saved._asdict()))
    return (h_n, c_n), saved


def backward(variant, launch, dy, w_hh, lengths, reverse, dstate_n, saved):
    """Launch the backward kernel; returns ``(d_pre_x, d_pre_h, dstate0)`` (one array serves both)."""
    grid, threads, shared, tile = launch
    steps, batch, _ = dy.shape
    width, hidden = w_hh.shape
    dtype = saved.gates.dtype
    d_pre = empty((steps, batch, width), dtype)
    dh0, dc0 = empty((batch, hidden), dtype), empty((batch, hidden), dtype)
    backward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        BACKWARD_PARAMS, dy=dy, w_hh=w_hh, lengths=lengths, reverse=reverse, dh_n=dstate_n[0], dc_n=dstate_n[1],
        gates=saved.gates, c_seq=saved.c_seq, c_prev_seq=saved.c_prev_seq, d_pre=d_pre, dh0=dh0, dc0=dc0))
    return d_pre, d_pre, (dh0, dc0)


def recurrent_inputs(variant, saved, hidden):
    """``(first gate row, last, (T, B, H) input)`` blocks of the ``W_hh`` gradient: all rows times h_prev."""
    return ((0, 4 * hidden, saved.h_prev_seq),)


def signatures(dtype, tile):
    """``(label, kernel, params)`` of this family's kernels for the PTX check."""
    name = np.dtype(dtype).name
    return [("lstm_forward", forward_kernel(name, tile), FORWARD_PARAMS),
            ("lstm_backward", backward_kernel(name, tile), BACKWARD_PARAMS)]
