"""GRU recurrence kernels of the CUDA backend, both forms (``variant``: reset after, PyTorch's; else Cho's).

Kernel design (blocks own a batch slice, barriers per step) in
:mod:`numrnn.backends.cuda`; the pointwise math is the scalar functions of
:mod:`numrnn.cells.gru` compiled as device functions.  Each kernel's parameters
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
from numrnn.cells import gru as gru_cell

gru_gates = cuda_device(gru_cell.gates)
gru_candidate_update = cuda_device(gru_cell.candidate_update)
gru_candidate_update_backward = cuda_device(gru_cell.candidate_update_backward)
gru_gates_backward = cuda_device(gru_cell.gates_backward)
gru_candidate_reset_after = cuda_device(gru_cell.candidate_reset_after)
gru_candidate_reset_after_backward = cuda_device(gru_cell.candidate_reset_after_backward)
gru_reset_hidden = cuda_device(gru_cell.reset_hidden)
gru_candidate_reset_before = cuda_device(gru_cell.candidate_reset_before)
gru_reset_hidden_backward = cuda_device(gru_cell.reset_hidden_backward)


@cuda_device
def gru_update_and_save(a_candidate, update_gate, h_old, t, b, j, hidden, y, gates, h_prev_seq):
    """The candidate and new state of unit ``j`` of sequence ``b`` at time ``t`` (either form,
    :func:`numrnn.cells.gru.candidate_update`), saved for backward and written to ``y``; returns
    the new state."""
    candidate, h_new = gru_candidate_update(a_candidate, update_gate, h_old)
    gates[t, b, 2 * hidden + j] = candidate
    h_prev_seq[t, b, j] = h_old
    y[t, b, j] = h_new
    return h_new


@cuda_device
def gru_clear_step(s, b, j, hidden, y, gates, h_prev_seq, aux_seq):
    """Zero what step ``s`` writes for unit ``j`` of sequence ``b`` past its length."""
    y[s, b, j] = 0
    for g in range(3):
        gates[s, b, g * hidden + j] = 0
    h_prev_seq[s, b, j] = 0
    aux_seq[s, b, j] = 0


#: what the forward kernel saves for backward: gates (T, B, 3H), h_prev_seq and aux_seq (T, B, H)
#: (``aux_seq`` is ``W_hn h + b_hn`` in the reset-after form, ``r * h_prev`` in Cho's)
Saved = collections.namedtuple("GRUSaved", "gates h_prev_seq aux_seq")

FORWARD_PARAMS = params("pre_x:C3 w_t:C2 b_hh:C1 lengths:L reverse:B reset_after:B h0:C2 y:A3 h_n:C2 "
                        "gates:C3 h_prev_seq:C3 aux_seq:C3")
BACKWARD_PARAMS = params("dy:A3 w_hh:C2 lengths:L reverse:B reset_after:B dh_n:C2 gates:C3 h_prev_seq:C3 "
                         "aux_seq:C3 d_pre_x:C3 d_pre_h:C3 dh0:C2 dh_direct:C2 d_update:C2")


def shared_values(variant, tile, hidden, forward):
    """Dynamic shared-memory elements of one block (Cho's form keeps ``r * h`` or the
    candidate gradient too)."""
    if forward:
        return (2 if variant else 3) * tile * hidden
    return (3 if variant else 4) * tile * hidden


def folded_rows(variant, hidden):
    """How many leading rows of ``b_hh`` fold into the input projection's bias (r and z)."""
    return gru_cell.FOLDED_GATES * hidden


@functools.lru_cache(maxsize=None)
def forward_kernel(dtype_name, tile):
    """The compiled :func:`gru_forward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def gru_forward(pre_x, w_t, b_hh, lengths, reverse, reset_after, h0, y, h_n, gates, h_prev_seq, aux_seq):
        """GRU over the sequence, either form; ``w_t`` is ``W_hh^T`` (H, 3H).

        ``pre_x`` holds ``W_ih x + b_ih`` plus ``b_hh`` for the r and z blocks only.
        """
        steps, batch, hidden = pre_x.shape[0], pre_x.shape[1], h0.shape[1]
        h_buf = cuda.shared.array(0, float_t)  # [2][tile][hidden], then (Cho) r*h [tile][hidden]
        acc_r = cuda.local.array(tile, float_t)
        acc_z = cuda.local.array(tile, float_t)
        acc_n = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        half = tile * hidden
        reset_h = 2 * half
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
                b_hn = b_hh[2 * hidden + j]
                for bl in range(tile):
                    b = b0 + bl
                    t = -1
                    if b < batch:
                        t = time_index(s, lengths[b], reverse)
                    if t >= 0:
                        acc_r[bl] = pre_x[t, b, j]
                        acc_z[bl] = pre_x[t, b, hidden + j]
                    else:
                        acc_r[bl] = 0
                        acc_z[bl] = 0
                    acc_n[bl] = b_hn
                if reset_after:
                    for k in range(hidden):
                        w_r = w_t[k, j]
                        w_z = w_t[k, hidden + j]
                        w_n = w_t[k, 2 * hidden + j]
                        for bl in range(tile):
                            h_k = h_buf[cur + bl * hidden + k]
                            acc_r[bl] += w_r * h_k
                            acc_z[bl] += w_z * h_k
                            acc_n[bl] += w_n * h_k
                else:
                    for k in range(hidden):
                        w_r = w_t[k, j]
                        w_z = w_t[k, hidden + j]
                        for bl in range(tile):
                            h_k = h_buf[cur + bl * hidden + k]
                            acc_r[bl] += w_r * h_k
                            acc_z[bl] += w_z * h_k
                for bl in range(tile):
                    b = b0 + bl
                    if b >= batch:
                        continue
                    t = time_index(s, lengths[b], reverse)
                    h_old = h_buf[cur + bl * hidden + j]
                    if t < 0:
                        h_buf[nxt + bl * hidden + j] = h_old
                        if not reset_after:
                            h_buf[reset_h + bl * hidden + j] = 0
                        gru_clear_step(s, b, j, hidden, y, gates, h_prev_seq, aux_seq)
                        continue
                    r_g, z_g = gru_gates(acc_r[bl], acc_z[bl])
                    gates[t, b, j] = r_g
                    gates[t, b, hidden + j] = z_g
                    if reset_after:
                        hn = acc_n[bl]
                        aux_seq[t, b, j] = hn
                        a_n = gru_candidate_reset_after(pre_x[t, b, 2 * hidden + j], r_g, hn)
                        h_buf[nxt + bl * hidden + j] = gru_update_and_save(a_n, z_g, h_old, t, b, j, hidden, y,
                                                                           gates, h_prev_seq)
                    else:
                        reset_state = gru_reset_hidden(r_g, h_old)
                        h_buf[reset_h + bl * hidden + j] = reset_state
                        aux_seq[t, b, j] = reset_state
            if not reset_after:
                cuda.syncthreads()
                for j in range(tid, hidden, threads):
                    for bl in range(tile):
                        acc_n[bl] = 0
                    for k in range(hidden):
                        w_n = w_t[k, 2 * hidden + j]
                        for bl in range(tile):
                            acc_n[bl] += w_n * h_buf[reset_h + bl * hidden + k]
                    for bl in range(tile):
                        b = b0 + bl
                        if b >= batch:
                            continue
                        t = time_index(s, lengths[b], reverse)
                        if t < 0:
                            continue
                        h_old = h_buf[cur + bl * hidden + j]
                        a_n = gru_candidate_reset_before(pre_x[t, b, 2 * hidden + j], acc_n[bl], b_hh[2 * hidden + j])
                        h_buf[nxt + bl * hidden + j] = gru_update_and_save(a_n, gates[t, b, hidden + j], h_old, t, b,
                                                                           j, hidden, y, gates, h_prev_seq)
            cuda.syncthreads()
        final = (steps % 2) * half
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    h_n[b, j] = h_buf[final + bl * hidden + j]

    return cuda.jit(gru_forward)


@functools.lru_cache(maxsize=None)
def backward_kernel(dtype_name, tile):
    """The compiled :func:`gru_backward` kernel for one dtype and batch tile (a compile-time constant)."""
    float_t = numba.from_dtype(np.dtype(dtype_name))

    def gru_backward(
        dy, w_hh, lengths, reverse, reset_after, dh_n, gates, h_prev_seq, aux_seq,
        d_pre_x, d_pre_h, dh0, dh_direct, d_update,
    ):
        """Backward of :func:`gru_forward`; ``dh0`` holds the running dh, ``dh_direct`` and
        ``d_update`` (B, H) are per-unit scratch."""
        steps, batch, hidden = dy.shape[0], dy.shape[1], dh_n.shape[1]
        width = 3 * hidden
        shared = cuda.shared.array(0, float_t)  # d_step [tile][3 hidden], then (Cho) d_candidate [tile][hidden]
        cand = tile * width
        acc = cuda.local.array(tile, float_t)
        b0 = cuda.blockIdx.x * tile
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        recurrent = width if reset_after else 2 * hidden
        for idx in range(tid, tile * width, threads):
            shared[idx] = 0
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
                    row = bl * width
                    if t < 0:
                        for g in range(3):
                            d_pre_x[s, b, g * hidden + j] = 0
                            d_pre_h[s, b, g * hidden + j] = 0
                            shared[row + g * hidden + j] = 0
                        if not reset_after:
                            shared[cand + bl * hidden + j] = 0
                        continue
                    r_g = gates[t, b, j]
                    z_g = gates[t, b, hidden + j]
                    d_a_n, d_z, d_h_direct = gru_candidate_update_backward(
                        dh0[b, j] + dy[t, b, j], z_g, gates[t, b, 2 * hidden + j], h_prev_seq[t, b, j]
                    )
                    dh_direct[b, j] = d_h_direct
                    if reset_after:
                        d_r, d_h_candidate = gru_candidate_reset_after_backward(d_a_n, r_g, aux_seq[t, b, j])
                        d_a_r, d_a_z = gru_gates_backward(d_r, d_z, r_g, z_g)
                        d_pre_x[t, b, j] = d_a_r
                        d_pre_x[t, b, hidden + j] = d_a_z
                        d_pre_x[t, b, 2 * hidden + j] = d_a_n
                        d_pre_h[t, b, j] = d_a_r
                        d_pre_h[t, b, hidden + j] = d_a_z
                        d_pre_h[t, b, 2 * hidden + j] = d_h_candidate
                        shared[row + j] = d_a_r
                        shared[row + hidden + j] = d_a_z
                        shared[row + 2 * hidden + j] = d_h_candidate
                    else:
                        shared[cand + bl * hidden + j] = d_a_n
                        d_update[b, j] = d_z
            cuda.syncthreads()
            if not reset_after:
                for j in range(tid, hidden, threads):
                    for bl in range(tile):
                        acc[bl] = 0
                    for k in range(hidden):
                        w = w_hh[2 * hidden + k, j]
                        for bl in range(tile):
                            acc[bl] += shared[cand + bl * hidden + k] * w
                    for bl in range(tile):
                        b = b0 + bl
                        if b >= batch:
                            continue
                        t = time_index(s, lengths[b], reverse)
                        if t < 0:
                            continue
                        r_g = gates[t, b, j]
                        d_r, d_h_reset = gru_reset_hidden_backward(acc[bl], r_g, h_prev_seq[t, b, j])
                        dh_direct[b, j] += d_h_reset
                        d_a_n = shared[cand + bl * hidden + j]
                        d_a_r, d_a_z = gru_gates_backward(d_r, d_update[b, j], r_g, gates[t, b, hidden + j])
                        d_pre_x[t, b, j] = d_a_r
                        d_pre_x[t, b, hidden + j] = d_a_z
                        d_pre_x[t, b, 2 * hidden + j] = d_a_n
                        d_pre_h[t, b, j] = d_a_r
                        d_pre_h[t, b, hidden + j] = d_a_z
                        d_pre_h[t, b, 2 * hidden + j] = d_a_n
                        shared[bl * width + j] = d_a_r
                        shared[bl * width + hidden + j] = d_a_z
                cuda.syncthreads()
            for k in range(tid, hidden, threads):
                for bl in range(tile):
                    acc[bl] = 0
                for gj in range(recurrent):
                    w = w_hh[gj, k]
                    for bl in range(tile):
                        acc[bl] += shared[bl * width + gj] * w
                for bl in range(tile):
                    b = b0 + bl
                    if b < batch and s < lengths[b]:
                        dh0[b, k] = dh_direct[b, k] + acc[bl]
            cuda.syncthreads()

    return cuda.jit(gru_backward)


def forward(variant, launch, pre_x, w_t, b_hh, lengths, reverse, state0, y):
    """Launch the forward kernel (``variant``: reset after); returns ``(state_n, saved)``.

    ``launch`` is ``(grid, threads, shared bytes, tile)``; ``pre_x`` (T, B, 3H) with
    ``b_hh`` folded for r and z only, ``w_t`` (H, 3H) ``W_hh^T``, ``b_hh`` (3H,),
    ``state0`` ``(h0,)`` (B, H), ``y`` (T, B, H) written in place.
    """
    grid, threads, shared, tile = launch
    steps, batch, width = pre_x.shape
    hidden, dtype = w_t.shape[0], pre_x.dtype
    h_n = empty((batch, hidden), dtype)
    saved = Saved(empty((steps, batch, width), dtype), *(empty((steps, batch, hidden), dtype) for _ in range(2)))
    forward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        FORWARD_PARAMS, pre_x=pre_x, w_t=w_t, b_hh=b_hh, lengths=lengths, reverse=reverse, reset_after=variant,
        h0=state0[0], y=y, h_n=h_n, **saved._asdict()))
    return (h_n,), saved


def backward(variant, launch, dy, w_hh, lengths, reverse, dstate_n, saved):
    """Launch the backward kernel; returns ``(d_pre_x, d_pre_h, dstate0)``, each gate
    gradient (T, B, 3H) (they differ in the n block)."""
    grid, threads, shared, tile = launch
    steps, batch, _ = dy.shape
    width, hidden = w_hh.shape
    dtype = saved.gates.dtype
    d_pre_x = empty((steps, batch, width), dtype)
    d_pre_h = empty((steps, batch, width), dtype)
    dh0 = empty((batch, hidden), dtype)
    backward_kernel(np.dtype(dtype).name, tile)[grid, threads, 0, shared](*arguments(
        BACKWARD_PARAMS, dy=dy, w_hh=w_hh, lengths=lengths, reverse=reverse, reset_after=variant,
        dh_n=dstate_n[0], d_pre_x=d_pre_x, d_pre_h=d_pre_h, dh0=dh0,
        dh_direct=empty((batch, hidden), dtype), d_update=empty((batch, hidden), dtype), **saved._asdict()))
    return d_pre_x, d_pre_h, (dh0,)


def recurrent_inputs(variant, saved, hidden):
    """``(first gate row, last, (T, B, H) input)`` blocks of the ``W_hh`` gradient: in Cho's
    form the n rows multiply ``r * h_prev`` (saved in ``aux_seq``), not ``h_prev``."""
    if variant:
        return ((0, 3 * hidden, saved.h_prev_seq),)
    folded = gru_cell.FOLDED_GATES * hidden
    return ((0, folded, saved.h_prev_seq), (folded, 3 * hidden, saved.aux_seq))


def signatures(dtype, tile):
    """``(label, kernel, params)`` of this family's kernels for the PTX check."""
    name = np.dtype(dtype).name
    return [("gru_forward", forward_kernel(name, tile), FORWARD_PARAMS),
            ("gru_backward", backward_kernel(name, tile), BACKWARD_PARAMS)]
