"""Elman RNN recurrence kernels of the CUDA backend (tanh or ReLU, the ``variant`` flag).

Kernel design (blocks own a batch slice, barriers per step) in
:mod:`numrnn.backends.cuda`; the pointwise math is the scalar functions of
:mod:`numrnn.cells.rnn` compiled as device functions.  Each kernel's parameters
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
from numrnn.cells import rnn as rnn_cell

rnn_tanh = cuda_device(rnn_cell.tanh_forward)
rnn_tanh_backward = cuda_device(rnn_cell.tanh_backward)
rnn_relu = cuda_device(rnn_cell.relu_forward)
rnn_relu_backward = cuda_device(rnn_cell.relu_backward)


#: what the forward kernel saves for backward, each (T, B, H)
Saved = collections.namedtuple("RNNSaved", "h_seq h_prev_seq")

FORWARD_PARAMS = params("pre_x:C3 w_t:C2 lengths:L reverse:B relu:B h0:C2 y:A3 h_n:C2 h_seq:C3 h_prev_seq:C3")
BACKWARD_PARAMS = params("dy:A3 w_hh:C2 lengths:L reverse:B relu:B dh_n:C2 h_seq:C3 d_pre:C3 dh0:C2")


def shared_values(variant, tile, hidden, forward):
    """Dynamic shared-memory elements of one block: the h double buffer, or the step gradient."""
    return (2 if forward else 1) * tile * hidden


def folded_rows(variant, hidden):
    """How many leading rows of ``b_hh`` fold into the input projection's bias: all of them."""
    return hidden


@functools.lru_cache(maxsize=None)
def forward_kernel(dtype_name, tile):
    """The compiled :func:`rnn_forward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def rnn_forward(pre_x, w_t, lengths, reverse, relu, h0, y, h_n, h_seq, h_prev_seq):
        """Elman RNN over the sequence; ``w_t`` is ``W_hh^T`` (H, H)."""
        steps, batch, hidden = pre_x.shape[0], pre_x.shape[1], h0.shape[1]
        h_buf = cuda.shared.array(0, float_t)  # [2][tile][hidden]
        acc = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        half = tile * hidden
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                value = float_t(0)
                if b < batch:
                    value = h0[b, j]
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
                        acc[bl] = pre_x[t, b, j]
                    else:
                        acc[bl] = 0
                for k in range(hidden):
                    w = w_t[k, j]
                    for bl in range(tile):
                        acc[bl] += w * h_buf[cur + bl * hidden + k]
                for bl in range(tile):
                    b = b0 + bl
                    if b >= batch:
                        continue
                    t = time_index(s, lengths[b], reverse)
                    h_old = h_buf[cur + bl * hidden + j]
                    if t < 0:
                        h_buf[nxt + bl * hidden + j] = h_old
                        y[s, b, j] = 0
                        h_seq[s, b, j] = 0
                        h_prev_seq[s, b, j] = 0
                        continue
                    if relu:
                        h_new = rnn_relu(acc[bl])
                    else:
                        h_new = rnn_tanh(acc[bl])
                    h_prev_seq[t, b, j] = h_old
                    h_seq[t, b, j] = h_new
                    y[t, b, j] = h_new
                    h_buf[nxt + bl * hidden + j] = h_new
            cuda.syncthreads()
        final = (steps % 2) * half
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    h_n[b, j] = h_buf[final + bl * hidden + j]

    return cuda.jit(rnn_forward)


@functools.lru_cache(maxsize=None)
def backward_kernel(dtype_name, tile):
    """The compiled :func:`rnn_backward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def rnn_backward(dy, w_hh, lengths, reverse, relu, dh_n, h_seq, d_pre, dh0):
        """Backward of :func:`rnn_forward`; ``dh0`` holds the running dh."""
        steps, batch, hidden = dy.shape[0], dy.shape[1], dh_n.shape[1]
        d_step = cuda.shared.array(0, float_t)  # [tile][hidden]
        acc = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        for idx in range(tid, tile * hidden, threads):
            d_step[idx] = 0
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    dh0[b, j] = dh_n[b, j]
        cuda.syncthreads()
        for s in range(steps - 1, -1, -1):
            for j in range(tid, hidden, threads):
                for bl in range(tile):
                    b = b0 + bl
                    if b >= batch:
                        continue
                    t = time_index(s, lengths[b], reverse)
                    if t < 0:
                        d_pre[s, b, j] = 0
                        d_step[bl * hidden + j] = 0
                        continue
                    if relu:
                        d_a = rnn_relu_backward(dh0[b, j] + dy[t, b, j], h_seq[t, b, j])
                    else:
                        d_a = rnn_tanh_backward(dh0[b, j] + dy[t, b, j], h_seq[t, b, j])
                    d_pre[t, b, j] = d_a
                    d_step[bl * hidden + j] = d_a
            cuda.syncthreads()
            for k in range(tid, hidden, threads):
                for bl in range(tile):
                    acc[bl] = 0
                for j in range(hidden):
                    w = w_hh[j, k]
                    for bl in range(tile):
                        acc[bl] += d_step[bl * hidden + j] * w
                for bl in range(tile):
                    b = b0 + bl
                    if b < batch and s < lengths[b]:
                        dh0[b, k] = acc[bl]
            cuda.syncthreads()

    return cuda.jit(rnn_backward)


def forward(variant, launch, pre_x, w_t, b_hh, lengths, reverse, state0, y):
    """Launch the forward kernel (``variant``: ReLU); returns ``(state_n, saved)``.

    ``launch`` is ``(grid, threads, shared bytes, tile)``; ``pre_x`` (T, B, H), ``w_t``
    (H, H) ``W_hh^T``, ``state0`` ``(h0,)`` (B, H), ``y`` (T, B, H) written in place.
    """
    grid, threads, shared, tile = launch
    steps, batch, hidden = pre_x.shape
    dtype = pre_x.dtype
    h_n = empty((batch, hidden), dtype)
    saved = Saved(*(empty((steps, batch, hidden), dtype) for _ in range(2)))
    forward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        FORWARD_PARAMS, pre_x=pre_x, w_t=w_t, lengths=lengths, reverse=reverse, relu=variant, h0=state0[0],
        y=y, h_n=h_n, **saved._asdict()))
    return (h_n,), saved


def backward(variant, launch, dy, w_hh, lengths, reverse, dstate_n, saved):
    """Launch the backward kernel; returns ``(d_pre_x, d_pre_h, dstate0)`` (one array serves both)."""
    grid, threads, shared, tile = launch
    steps, batch, _ = dy.shape
    hidden = w_hh.shape[1]
    dtype = saved.h_seq.dtype
    d_pre = empty((steps, batch, hidden), dtype)
    dh0 = empty((batch, hidden), dtype)
    backward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        BACKWARD_PARAMS, dy=dy, w_hh=w_hh, lengths=lengths, reverse=reverse, relu=variant, dh_n=dstate_n[0],
        h_seq=saved.h_seq, d_pre=d_pre, dh0=dh0))
    return d_pre, d_pre, (dh0,)


def recurrent_inputs(variant, saved, hidden):
    """``(first gate row, last, (T, B, H) input)`` blocks of the ``W_hh`` gradient: all rows times h_prev."""
    return ((0, hidden, saved.h_prev_seq),)


def signatures(dtype, tile):
    """``(label, kernel, params)`` of this family's kernels for the PTX check."""
    name = np.dtype(dtype).name
    return [("rnn_forward", forward_kernel(name, tile), FORWARD_PARAMS),
            ("rnn_backward", backward_kernel(name, tile), BACKWARD_PARAMS)]
