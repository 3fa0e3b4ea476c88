r"""CPU backend: ``@njit`` drivers for one layer-direction of each cell family.

Every driver runs a whole sequence in one call, so no Python runs per timestep:

* the matrix products are built from register tiles written with explicit SIMD
  lanes (:mod:`numrnn.backends.cpu_simd`), on weights packed once per call into
  contiguous panels (:func:`step_weights`, :func:`matmul_rows`): about 220 GFLOP/s a
  core here, above this machine's BLAS, whose dispatch and packing dominate the
  small per-step products.  BLAS remains for what does not fit the tiles (fewer
  columns than one vector, many rows on unpacked weights) and for the weight
  gradients over all timesteps;
* the input projection of all timesteps is one product ``(T*B, I) @ (I, G*H)``
  with the biases added on the way, rows split in fixed chunks run in parallel;
* the recurrence is split over blocks of the batch, run in parallel with
  ``prange`` (one block per thread); each block owns its rows for the *whole*
  sequence, so threads never synchronise between timesteps.  Per timestep a
  block does one recurrent product ``(rows, H) @ (H, G*H)`` for all gates
  (:func:`step_product`), then one fused pointwise pass built from the scalar cell
  functions of :mod:`numrnn.cells` (the LSTM's backward pass compiles them for
  SIMD lanes, as LLVM leaves that loop scalar).  Nothing is allocated inside the
  time loop;
* in backward, the weight gradients are matrix products over all timesteps after
  the time loop: ``dW_ih = dA_x^T X``, ``dW_hh = dA_h^T H_prev`` and the bias sums,
  as partial sums over fixed row chunks in one parallel pass (fewer chunks where
  their partial sums would pass :data:`PARTIAL_SUMS_MAX_BYTES`);
* BLAS runs single-threaded inside these calls (:func:`single_threaded_blas`):
  OpenBLAS's own thread pool on top of Numba's made 2-core steps several times
  slower.  The chunks of the big products and reductions depend on the shapes
  only, and the per-step products compute every row the same way whichever
  block it falls in (:func:`step_product`), so although the batch blocks follow
  the thread count, results are the same bits for any thread count;
* what forward saves and backward's scratch live in caller-owned workspaces
  reused across calls (:class:`CPUBackend`), so a training step allocates no
  large array; the activated gates overwrite their pre-activations, the LSTM's
  and GRU's gate gradients overwrite their saved gates, and what backward can
  read from other saved arrays (the LSTM's ``c_{t-1}``, the RNN's outputs) is
  not saved twice.

The streaming ``step()`` is the other kind of call: one timestep, small B, where
the cost of calling compiled code from Python is as large as the step itself.
:func:`step_kernel` and :func:`stack_step_kernel` do the border checks and every
layer's step in one compiled call, compiled for the layer's dtype only; products
in dot form on the weights as stored (:func:`~numrnn.backends.cpu_simd.matvec_into`);
the new state written into one array the caller made.

Measured choices and their numbers are in the README's Performance section.

Conventions shared by every driver (arrays are contiguous and of one float
dtype; validation happened at the API):

``x`` (T, B, I)
    Time-major input.
``lengths`` (B,) int64
    Valid length of each sequence, in ``[1, T]``.  At step ``s`` sequence ``b``
    is active when ``s < lengths[b]``; it then processes time index
    ``t = s`` (forward) or ``t = lengths[b] - 1 - s`` (``reverse=True``).
    Inactive sequences keep their state and write no output.
``blocks`` int
    Number of batch blocks run in parallel (:func:`batch_blocks`).
``y`` (T, B, H)
    Contiguous output buffer, pre-filled with zeros; drivers write active
    positions only.
Saved arrays are indexed by time ``t`` (zero where inactive), so that the
weight gradients are plain matrix products over ``T*B`` rows.
"""

from __future__ import annotations

import sys
from typing import Callable, NamedTuple

import numba
import numpy as np
from numba import types
from numba.extending import overload

from numrnn._jit import OVERLOAD_OPTIONS, cpu_function, cpu_kernel
from numrnn.backends import cpu_activations  # noqa: F401  (registers the float32 activations)
from numrnn.backends.host_arrays import HostArrays
from numrnn.backends.cpu_simd import lane_count, load_lanes, matmul_packed_into, matvec_into, pack_panels, packs_evenly, store_lanes
from numrnn.backends.cpu_simd import matmul_into as simd_matmul_into
from numrnn.cells import gru as gru_cell
from numrnn.cells import lstm as lstm_cell
from numrnn.cells import rnn as rnn_cell
from numrnn.cells import FAMILIES, cell_family, sequence

name = "cpu"

lstm_pointwise = cpu_function(lstm_cell.forward)
lstm_pointwise_backward = cpu_function(lstm_cell.backward)
gru_gates = cpu_function(gru_cell.gates)
gru_candidate_update = cpu_function(gru_cell.candidate_update)
gru_candidate_update_backward = cpu_function(gru_cell.candidate_update_backward)
gru_gates_backward = cpu_function(gru_cell.gates_backward)
gru_fold_biases = cpu_function(gru_cell.fold_biases)
gru_candidate_reset_after = cpu_function(gru_cell.candidate_reset_after)
gru_candidate_reset_after_backward = cpu_function(gru_cell.candidate_reset_after_backward)
gru_reset_hidden = cpu_function(gru_cell.reset_hidden)
gru_candidate_reset_before = cpu_function(gru_cell.candidate_reset_before)
gru_reset_hidden_backward = cpu_function(gru_cell.reset_hidden_backward)
rnn_tanh = cpu_function(rnn_cell.tanh_forward)
rnn_tanh_backward = cpu_function(rnn_cell.tanh_backward)
rnn_relu = cpu_function(rnn_cell.relu_forward)
rnn_relu_backward = cpu_function(rnn_cell.relu_backward)


time_index = cpu_function(sequence.time_index)



#: Products with at most this many rows, or at most :data:`SIMD_PRODUCT_MAX_WORK`
#: multiply-adds, run in register tiles (:func:`numrnn.backends.cpu_simd.matmul_into`):
#: there BLAS's dispatch and packing cost more than the product.  The per-step
#: products of the time loops (rows = one batch block) are of this kind.
SIMD_PRODUCT_MAX_ROWS = 64
SIMD_PRODUCT_MAX_WORK = 1 << 21

#: Register tiles read ``b`` straight from memory, so they also need ``b`` to fit
#: in cache: above this many bytes BLAS, whose packing then pays off.
SIMD_PRODUCT_MAX_BYTES = 1 << 21


@cpu_function
def product_into(a, b, out, bias=None):
    """``out[...] = a @ b (+ bias)`` (``b``, ``out``, ``bias`` C-contiguous): register
    tiles or BLAS.

    Register tiles for few rows or little work (see :data:`SIMD_PRODUCT_MAX_ROWS`),
    when ``b`` has at least one vector of columns (16 float32 / 8 float64) and fits
    in cache; BLAS otherwise.  BLAS is single-threaded inside numrnn's calls, so
    this is safe inside ``prange``.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    few = rows <= SIMD_PRODUCT_MAX_ROWS or rows * inner * cols <= SIMD_PRODUCT_MAX_WORK
    if few and cols >= lane_count(out[0]) and b.size * b.itemsize <= SIMD_PRODUCT_MAX_BYTES:
        simd_matmul_into(a, b, out, bias)
    else:
        np.dot(a, b, out)
        if bias is not None:
            for i in range(rows):
                out[i] += bias


@cpu_function
def step_weights(b):
    """Weights ``b`` (K, N) of a per-step product, as ``(b, panels)`` for
    :func:`step_product`: ``panels`` is :func:`~numrnn.backends.cpu_simd.pack_panels`
    ``(b)``, or empty where the columns do not fill whole panels.  Packed once per
    call, used at every step."""
    if packs_evenly(b):
        return b, pack_panels(b)
    return b, np.empty((0, b.shape[0], 2 * lane_count(b[0])), dtype=b.dtype)


@cpu_function
def step_product(a, weights, out):
    """``out[...] = a @ b`` for the time loops, ``weights`` from :func:`step_weights`.

    Always register tiles, never BLAS: packed panels
    (:func:`~numrnn.backends.cpu_simd.matmul_packed_into`: about 220 GFLOP/s a core
    here from (8, 256) @ (256, 1024) to (64, 512) @ (512, 2048), against 100-185 for
    BLAS) where the weights were packed, else
    :func:`~numrnn.backends.cpu_simd.matmul_into` on ``b`` as it is.  Both compute
    each output as the same fused multiply-adds in the same order, whichever tile
    a row falls in, so a row's result does not depend on how the batch was split
    into blocks, and so not on the thread count.  BLAS's result for a row could
    (its kernels depend on the number of rows).
    """
    b, panels = weights
    if panels.shape[0] > 0:
        matmul_packed_into(a, panels, out)
    else:
        simd_matmul_into(a, b, out)


@cpu_function
def matmul_nt_into(a, b, out):
    """``out[...] = a @ b.T`` for small C-contiguous 2-D arrays, without BLAS.

    One :func:`~numrnn.backends.cpu_simd.matvec_into` per row of ``a``: dot
    products with the rows of ``b`` as stored, so the streaming step kernels
    (:func:`lstm_step` and friends) need no transposed copy of the weights.
    """
    for i in range(a.shape[0]):
        matvec_into(b, a[i], out[i])


def batch_blocks(batch):
    """Number of row blocks for the parallel recurrence: one per Numba thread, at most ``batch``."""
    return max(1, min(batch, numba.get_num_threads()))


@cpu_function
def block_bounds(block, blocks, batch):
    """Rows ``[lo, hi)`` of ``block`` out of ``blocks`` near-equal blocks."""
    return block * batch // blocks, (block + 1) * batch // blocks


#: Fixed number of blocks for the products over all ``T*B`` rows (row blocks of the
#: input projection and ``dx``, column blocks of the weight gradients).  Fixed, not
#: the thread count, so that results are the same bits whatever the thread count.
PRODUCT_CHUNKS = 8

#: Below this many multiply-adds a product runs as one BLAS call on the calling
#: thread: a parallel launch costs more than it saves.
PARALLEL_PRODUCT_MIN_WORK = 1 << 18


#: Rows per block of :func:`matmul_rows` on packed weights: a block is re-read for
#: every panel, so it must stay in cache.
PACKED_ROW_BLOCK = 64


@cpu_kernel(parallel=True)
def matmul_rows(a, b, out, bias=None):
    """``out[...] = a @ b (+ bias)`` with the rows of ``a`` split into chunks run in
    parallel: blocks of :data:`PACKED_ROW_BLOCK` rows on ``b`` packed once into panels
    (:func:`~numrnn.backends.cpu_simd.matmul_packed_into`) where its columns fill
    whole panels, else :func:`product_into`."""
    rows = a.shape[0]
    chunks = 1 if rows * a.shape[1] * b.shape[1] < PARALLEL_PRODUCT_MIN_WORK else min(PRODUCT_CHUNKS, rows)
    if packs_evenly(b):
        panels = pack_panels(b)
        blocks = (rows + PACKED_ROW_BLOCK - 1) // PACKED_ROW_BLOCK
        for chunk in numba.prange(chunks):
            first, last = block_bounds(chunk, chunks, blocks)
            for block in range(first, last):
                lo, hi = block * PACKED_ROW_BLOCK, min(rows, (block + 1) * PACKED_ROW_BLOCK)
                matmul_packed_into(a[lo:hi], panels, out[lo:hi], bias)
        return
    for chunk in numba.prange(chunks):
        lo, hi = block_bounds(chunk, chunks, rows)
        product_into(a[lo:hi], b, out[lo:hi], bias)


@cpu_kernel(parallel=True)
def matmul_tn(a, b):
    """``a.T @ b`` for tall ``a`` (N, G) and ``b`` (N, K): partial products over row
    chunks in parallel, then their sum."""
    rows = a.shape[0]
    if rows * a.shape[1] * b.shape[1] < PARALLEL_PRODUCT_MIN_WORK:
        out = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
        product_into(a.T, b, out)
        return out
    chunks = partial_chunks(rows, a.shape[1] * b.shape[1], a.itemsize)
    partial = np.empty((chunks, a.shape[1], b.shape[1]), dtype=a.dtype)
    for chunk in numba.prange(chunks):
        lo, hi = block_bounds(chunk, chunks, rows)
        product_into(a[lo:hi].T, b[lo:hi], partial[chunk])
    return sum_partials(partial)


#: Memory for the partial sums of the products over all ``T*B`` rows: row chunks
#: beyond what this holds (at least 2) are not used.  Eight chunks of a large
#: LSTM's (2048, 768) gradient would hold 48 MiB.
PARTIAL_SUMS_MAX_BYTES = 4 << 20


#: Fewest rows in one chunk of :func:`partial_chunks`.
PARTIAL_CHUNK_MIN_ROWS = 32


@cpu_function
def partial_chunks(rows, values, itemsize):
    """Row chunks for a reduction over ``rows`` into ``values`` outputs: up to
    :data:`PRODUCT_CHUNKS`, fewer (not below 2) where their partial sums would pass
    :data:`PARTIAL_SUMS_MAX_BYTES`, and at least :data:`PARTIAL_CHUNK_MIN_ROWS` rows
    each (a chunk of a few rows costs its whole partial sum for little work).  It
    depends on the shapes only, so the result is the same bits whatever the thread
    count."""
    fit = max(2, PARTIAL_SUMS_MAX_BYTES // (values * itemsize))
    return max(1, min(PRODUCT_CHUNKS, fit, rows // PARTIAL_CHUNK_MIN_ROWS))


@cpu_function
def sum_partials(partial):
    """``partial.sum(axis=0)``, in chunk order (so the same bits whatever the thread count)."""
    out = partial[0].copy()
    for chunk in range(1, partial.shape[0]):
        out += partial[chunk]
    return out


@cpu_kernel
def project_inputs(x, w_ih, bias, out):
    """``out = x @ w_ih.T + bias`` for all timesteps at once: (T, B, I) -> (T, B, G*H)."""
    steps, batch, features = x.shape
    rows = out.reshape(steps * batch, w_ih.shape[0])
    matmul_rows(x.reshape(steps * batch, features), np.ascontiguousarray(w_ih.T), rows, bias)


@cpu_function
def copy_into(source, target):
    """``target[:] = source`` for 1-D rows, as a plain loop: inside the time loops
    Numba's slice assignment costs more than copying a short row."""
    for j in range(target.shape[0]):
        target[j] = source[j]


@cpu_function
def zero_padding(a, lengths):
    """``a[t, b] = 0`` for the padded positions ``t >= lengths[b]`` of a (T, B, F) buffer.

    Buffers are reused across calls and the drivers write every valid position, so
    only the padding needs clearing (where products over all ``T*B`` rows read it).
    """
    for b in range(a.shape[1]):
        a[lengths[b] :, b, :] = 0


@cpu_function
def column_sums(a):
    """``a.sum(axis=0)`` for a C-contiguous 2-D array, row by row (vectorised; Numba's
    own axis sum is several times slower)."""
    out = np.zeros(a.shape[1], dtype=a.dtype)
    for i in range(a.shape[0]):
        row = a[i]
        for j in range(a.shape[1]):
            out[j] += row[j]
    return out


@cpu_kernel(parallel=True)
def weight_gradients(x, h_prev_seq, d_pre):
    """Gradients of ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` from the
    per-step pre-activation gradients ``d_pre`` (T, B, G*H): products over all ``T*B``
    rows, as partial sums over fixed row chunks in one parallel pass (then summed in
    chunk order).  (The GRU's candidate rows of the h side differ and are redone by
    its driver.)  With ``h_prev_seq`` None (the RNN, which sums ``dW_hh`` during its
    time loop) the ``weight_hh`` gradient is None."""
    steps, batch, features = x.shape
    hidden = 0
    if h_prev_seq is not None:
        hidden = h_prev_seq.shape[2]
    gates = d_pre.shape[2]
    rows = steps * batch
    d_rows = d_pre.reshape(rows, gates)
    x_rows = x.reshape(rows, features)
    chunks = 1
    if rows * gates * (features + hidden) >= PARALLEL_PRODUCT_MIN_WORK:
        chunks = partial_chunks(rows, gates * (features + hidden + 1), d_pre.itemsize)
    partial_ih = np.empty((chunks, gates, features), dtype=d_pre.dtype)
    partial_hh = np.empty((chunks, gates, hidden), dtype=d_pre.dtype)
    partial_b = np.empty((chunks, gates), dtype=d_pre.dtype)
    for chunk in numba.prange(chunks):
        lo, hi = block_bounds(chunk, chunks, rows)
        d_chunk = d_rows[lo:hi]
        product_into(d_chunk.T, x_rows[lo:hi], partial_ih[chunk])
        if h_prev_seq is not None:
            product_into(d_chunk.T, h_prev_seq.reshape(rows, hidden)[lo:hi], partial_hh[chunk])
        partial_b[chunk] = column_sums(d_chunk)
    d_b = sum_partials(partial_b)
    d_w_ih = sum_partials(partial_ih)
    if h_prev_seq is None:
        return d_w_ih, None, d_b, d_b.copy()
    return d_w_ih, sum_partials(partial_hh), d_b, d_b.copy()


@cpu_kernel
def input_gradient(d_pre_x, w_ih):
    """``dx = dA_x @ W_ih``: (T, B, G*H) -> (T, B, I)."""
    steps, batch, gates = d_pre_x.shape
    out = np.empty((steps * batch, w_ih.shape[1]), dtype=d_pre_x.dtype)
    matmul_rows(d_pre_x.reshape(steps * batch, gates), w_ih, out)
    return out.reshape(steps, batch, w_ih.shape[1])


# ----------------------------------------------------------------------------- RNN


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
    h_n[lo:hi] = h


@cpu_kernel(parallel=True)
def rnn_forward(x, lengths, reverse, relu, w_ih, w_hh, b_ih, b_hh, h0, y, blocks, h_prev_seq):
    """Elman RNN over a sequence; outputs go to ``y``, saved inputs of each step to
    the buffer ``h_prev_seq`` (T, B, H). Returns ``h_n``.

    The input projection is written into ``y`` itself, each step's output over its
    own pre-activation (read first): no (T, B, H) scratch.
    """
    batch = x.shape[1]
    project_inputs(x, w_ih, b_ih + b_hh, y)
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
    dh0[lo:hi] = dh


@cpu_kernel(parallel=True)
def rnn_backward(x, lengths, reverse, relu, w_ih, w_hh, dy, dh_n, h_prev_seq, h_last, d_pre, blocks):
    """Backward of :func:`rnn_forward` (``h_last`` is a copy of its final state); the
    pre-activation gradients go to the buffer ``d_pre`` (T, B, H).

    The weight gradients are products over all ``T*B`` rows after the time loop
    (:func:`weight_gradients`), as for the other cells, so their summation order
    depends on the shapes only.  Returns ``(dx, dh0, d_weight_ih, d_weight_hh,
    d_bias_ih, d_bias_hh)``.
    """
    batch = x.shape[1]
    dh0 = np.empty_like(dh_n)
    w_step = step_weights(w_hh)
    zero_padding(d_pre, lengths)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        rnn_backward_rows(lo, hi, lengths, reverse, relu, w_step, dy, dh_n, h_prev_seq, h_last, dh0, d_pre)
    dx = input_gradient(d_pre, w_ih)
    d_w_ih, d_w_hh, d_b_ih, d_b_hh = weight_gradients(x, h_prev_seq, d_pre)
    return dx, dh0, d_w_ih, d_w_hh, d_b_ih, d_b_hh


# ---------------------------------------------------------------------------- LSTM


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
    h_n[lo:hi] = h
    c_n[lo:hi] = c


@cpu_kernel(parallel=True)
def lstm_forward(x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, y, blocks, gates, c_seq, h_prev_seq):
    """LSTM over a sequence; outputs go to ``y``. Returns ``(h_n, c_n)``.

    Saved for backward, in caller-owned buffers: ``gates`` (T, B, 4H), the activated
    i, f, g, o blocks (first the input projection, overwritten in place); ``c_seq``
    and ``h_prev_seq`` (T, B, H).  (Backward reads ``c_{t-1}`` from ``c_seq`` and
    ``c0``: a saved copy would cost a quarter of the forward's stores.)
    """
    batch = x.shape[1]
    project_inputs(x, w_ih, b_ih + b_hh, gates)
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
    :class:`~numrnn.backends.cpu_simd.Lanes` (LLVM does not vectorise this loop by
    itself: the gate blocks are read and written at offsets it cannot separate),
    float64 one value at a time; both apply :func:`numrnn.cells.lstm.backward`.
    """
    _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, 0)


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


@overload(lstm_backward_units, jit_options=OVERLOAD_OPTIONS, inline="always")
def _lstm_backward_units_overload(dh, dy, dc, gates, c, c_prev):
    if dh.dtype == types.float32:
        return _lstm_backward_units_lanes
    return lambda dh, dy, dc, gates, c, c_prev: _lstm_backward_units_from(dh, dy, dc, gates, c, c_prev, 0)


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
    dh0[lo:hi] = dh
    dc0[lo:hi] = dc


@cpu_kernel(parallel=True)
def lstm_backward(x, lengths, reverse, w_ih, w_hh, dy, dh_n, dc_n, gates, c_seq, h_prev_seq, c0, blocks):
    """Backward of :func:`lstm_forward`; consumes ``gates`` (overwritten with dA).

    Returns ``(dx, dh0, dc0, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh)``.
    """
    steps, batch, _ = x.shape
    dh0 = np.empty_like(dh_n)
    dc0 = np.empty_like(dc_n)
    w_step = step_weights(w_hh)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        lstm_backward_rows(lo, hi, lengths, reverse, w_step, dy, dh_n, dc_n, gates, c_seq, c0, dh0, dc0)
    d_pre = gates
    dx = input_gradient(d_pre, w_ih)
    d_w_ih, d_w_hh, d_b_ih, d_b_hh = weight_gradients(x, h_prev_seq, d_pre)
    return dx, dh0, dc0, d_w_ih, d_w_hh, d_b_ih, d_b_hh


# ----------------------------------------------------------------------------- GRU


@cpu_function
def gru_gates_rows(s, lo, pre_x, pre_h, lengths, reverse, h, reset_h):
    """Reset and update gates of one GRU step for rows ``[lo, lo + len(h))``; ``reset_h = r * h``.

    The gates overwrite their pre-activations in ``pre_x`` (as in :func:`lstm_cell_rows`).
    """
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            r_g, z_g = gru_gates(pre_x[t, b, j] + pre_h[r, j], pre_x[t, b, hidden + j] + pre_h[r, hidden + j])
            pre_x[t, b, j] = r_g
            pre_x[t, b, hidden + j] = z_g
            reset_h[r, j] = gru_reset_hidden(r_g, h[r, j])


@cpu_function
def gru_update_rows(s, lo, pre_x, pre_h, pre_hn, b_hn, lengths, reverse, reset_after, h, reset_h, y, h_prev_seq, aux_seq):
    """Candidate and new state of one GRU step (after :func:`gru_gates_rows`); updates ``h``.

    Reads r, z from ``pre_x`` and overwrites the candidate's pre-activation with ``n``.

    ``reset_after``: the candidate's recurrent term is ``r * (pre_h[:, 2H:] + b_hn)``;
    Cho form: ``pre_hn + b_hn`` with ``pre_hn = (r * h) @ W_hn^T``.
    """
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            if reset_after:
                hn = pre_h[r, 2 * hidden + j] + b_hn[j]
                a_n = gru_candidate_reset_after(pre_x[t, b, 2 * hidden + j], pre_x[t, b, j], hn)
                aux_seq[t, b, j] = hn
            else:
                a_n = gru_candidate_reset_before(pre_x[t, b, 2 * hidden + j], pre_hn[r, j], b_hn[j])
                aux_seq[t, b, j] = reset_h[r, j]
            n_g, h_new = gru_candidate_update(a_n, pre_x[t, b, hidden + j], h[r, j])
            pre_x[t, b, 2 * hidden + j] = n_g
            h_prev_seq[t, b, j] = h[r, j]
            y[t, b, j] = h_new
            h[r, j] = h_new


@cpu_function
def gru_forward_rows(lo, hi, pre_x, lengths, reverse, reset_after, w_rec_t, w_hn_t, b_hn, h0, y, h_prev_seq, aux_seq, h_n):
    """Rows ``[lo, hi)`` of :func:`gru_forward` over the whole sequence."""
    rows = hi - lo
    hidden = h0.shape[1]
    h = h0[lo:hi].copy()
    pre_h = np.empty((rows, w_rec_t[0].shape[1]), dtype=h0.dtype)
    reset_h = np.zeros((rows, hidden), dtype=h0.dtype)
    pre_hn = np.zeros((rows, hidden), dtype=h0.dtype)
    for s in range(pre_x.shape[0]):
        step_product(h, w_rec_t, pre_h)
        gru_gates_rows(s, lo, pre_x, pre_h, lengths, reverse, h, reset_h)
        if not reset_after:
            step_product(reset_h, w_hn_t, pre_hn)
        gru_update_rows(s, lo, pre_x, pre_h, pre_hn, b_hn, lengths, reverse, reset_after, h, reset_h, y, h_prev_seq, aux_seq)
    h_n[lo:hi] = h


@cpu_kernel(parallel=True)
def gru_forward(x, lengths, reverse, reset_after, w_ih, w_hh, b_ih, b_hh, h0, y, blocks, gates, h_prev_seq, aux_seq):
    """GRU over a sequence, either form (see :mod:`numrnn.cells.gru`); outputs go to ``y``.

    Returns ``h_n``.  Saved for backward, in caller-owned buffers: ``gates`` (T, B, 3H),
    r, z, n (first the input projection, overwritten in place); ``h_prev_seq`` and
    ``aux_seq`` (T, B, H), the latter ``W_hn h + b_hn`` (``reset_after``) or
    ``r * h_prev`` (Cho form), whichever backward needs.
    """
    batch = x.shape[1]
    hidden = h0.shape[1]
    bias, b_hn = gru_fold_biases(b_ih, b_hh)
    project_inputs(x, w_ih, bias, gates)
    pre_x = gates
    # reset_after: one product for all three blocks; Cho form: r, z first, n after the reset
    w_rec_t = step_weights(np.ascontiguousarray(w_hh.T) if reset_after else np.ascontiguousarray(w_hh[: 2 * hidden].T))
    w_hn_t = step_weights(np.ascontiguousarray(w_hh[2 * hidden :].T))
    # h_prev_seq and aux_seq (Cho form) enter products on every row: zero their padding
    zero_padding(h_prev_seq, lengths)
    zero_padding(aux_seq, lengths)
    h_n = np.empty_like(h0)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        gru_forward_rows(lo, hi, pre_x, lengths, reverse, reset_after, w_rec_t, w_hn_t, b_hn, h0, y, h_prev_seq, aux_seq, h_n)
    return h_n


@cpu_function
def gru_backward_rows(lo, hi, lengths, reverse, reset_after, w_rec, w_hn, dy, dh_n, gates, h_prev_seq, aux_seq, dh0):
    """Rows ``[lo, hi)`` of :func:`gru_backward` over the whole sequence.

    In place, as for the LSTM: the x-side pre-activation gradients (dA_r, dA_z, dA_n)
    overwrite the saved gates r, z, n; with ``reset_after`` the h-side gradient of
    the candidate, ``dA_n * r``, overwrites ``aux_seq`` (``W_hn h + b_hn``, read first).
    In the Cho form the h-side gradients equal the x-side ones.
    """
    steps = dy.shape[0]
    hidden = dh_n.shape[1]
    rows = hi - lo
    dtype = dh_n.dtype
    dh = dh_n[lo:hi].copy()
    dh_direct = np.zeros((rows, hidden), dtype=dtype)
    d_update = np.zeros((rows, hidden), dtype=dtype)
    d_candidate = np.zeros((rows, hidden), dtype=dtype)
    d_reset_h = np.zeros((rows, hidden), dtype=dtype)
    d_step = np.zeros((rows, w_rec[0].shape[0]), dtype=dtype)
    dh_rec = np.empty((rows, hidden), dtype=dtype)
    for s in range(steps - 1, -1, -1):
        for r in range(rows):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            for j in range(hidden):
                if t < 0:
                    d_candidate[r, j] = 0
                    continue
                d_a_n, d_z, d_h_direct = gru_candidate_update_backward(
                    dh[r, j] + dy[t, b, j], gates[t, b, hidden + j], gates[t, b, 2 * hidden + j], h_prev_seq[t, b, j]
                )
                d_candidate[r, j] = d_a_n
                d_update[r, j] = d_z
                dh_direct[r, j] = d_h_direct
        if not reset_after:
            step_product(d_candidate, w_hn, d_reset_h)
        for r in range(rows):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            if t < 0:
                d_step[r, :] = 0
                continue
            for j in range(hidden):
                r_g = gates[t, b, j]
                d_a_n = d_candidate[r, j]
                if reset_after:
                    d_r, d_h_candidate = gru_candidate_reset_after_backward(d_a_n, r_g, aux_seq[t, b, j])
                    aux_seq[t, b, j] = d_h_candidate
                    d_step[r, 2 * hidden + j] = d_h_candidate
                else:
                    d_r, d_h_reset = gru_reset_hidden_backward(d_reset_h[r, j], r_g, h_prev_seq[t, b, j])
                    dh_direct[r, j] += d_h_reset
                d_a_r, d_a_z = gru_gates_backward(d_r, d_update[r, j], r_g, gates[t, b, hidden + j])
                gates[t, b, j] = d_a_r
                gates[t, b, hidden + j] = d_a_z
                gates[t, b, 2 * hidden + j] = d_a_n
                d_step[r, j] = d_a_r
                d_step[r, hidden + j] = d_a_z
        step_product(d_step, w_rec, dh_rec)
        for r in range(rows):
            if s < lengths[lo + r]:
                for j in range(hidden):
                    dh[r, j] = dh_direct[r, j] + dh_rec[r, j]
    dh0[lo:hi] = dh


@cpu_kernel(parallel=True)
def gru_backward(x, lengths, reverse, reset_after, w_ih, w_hh, dy, dh_n, gates, h_prev_seq, aux_seq, blocks):
    """Backward of :func:`gru_forward`; consumes ``gates`` and ``aux_seq`` (see
    :func:`gru_backward_rows`).

    Returns ``(dx, dh0, d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh)``.
    """
    steps, batch, _ = x.shape
    hidden = dh_n.shape[1]
    zero_padding(gates, lengths)  # padded rows enter the products below
    dh0 = np.empty_like(dh_n)
    w_rec = step_weights(w_hh.copy() if reset_after else np.ascontiguousarray(w_hh[: 2 * hidden]))
    w_hn = step_weights(np.ascontiguousarray(w_hh[2 * hidden :]))
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        gru_backward_rows(lo, hi, lengths, reverse, reset_after, w_rec, w_hn, dy, dh_n, gates, h_prev_seq, aux_seq, dh0)
    d_pre_x = gates
    dx = input_gradient(d_pre_x, w_ih)
    d_w_ih, d_w_hh, d_b_ih, d_b_hh = weight_gradients(x, h_prev_seq, d_pre_x)
    rows = steps * batch
    aux_rows = aux_seq.reshape(rows, hidden)
    if reset_after:
        # the n rows of the h side: gradient dA_n * r (now in aux_seq) against h_prev
        d_w_hh[2 * hidden :] = matmul_tn(aux_rows, h_prev_seq.reshape(rows, hidden))
        d_b_hh[2 * hidden :] = column_sums(aux_rows)
    else:
        # Cho form: the n rows of W_hh multiply r * h_prev (saved in aux_seq), not h_prev
        d_n_rows = np.ascontiguousarray(d_pre_x[:, :, 2 * hidden :]).reshape(rows, hidden)
        d_w_hh[2 * hidden :] = matmul_tn(d_n_rows, aux_rows)
    return dx, dh0, d_w_ih, d_w_hh, d_b_ih, d_b_hh


# -------------------------------------------------------------- streaming step()


def _float_bits(a):
    """``(bits, exponent_mask)``: the flat C-contiguous float array ``a`` viewed as
    unsigned integers of its width, and the mask of its exponent field."""
    raise NotImplementedError("compiled only: see the overload below")


@overload(_float_bits, jit_options=OVERLOAD_OPTIONS, inline="always")
def _float_bits_overload(a):
    if a.dtype == types.float32:
        return lambda a: (a.reshape(a.size).view(np.uint32), np.uint32(0x7F800000))
    if a.dtype == types.float64:
        return lambda a: (a.reshape(a.size).view(np.uint64), np.uint64(0x7FF0000000000000))
    return None


@cpu_function
def all_finite(a):
    """True when every value of ``a`` (C-contiguous, float32 or float64) is finite:
    a compiled scan for cheap border checks.

    A value is NaN or inf exactly when its exponent bits are all ones.  The test
    is made on the integer bits because no fast-math flag may fold integer
    arithmetic: the float form ``sum(v - v) == 0`` that this replaces was folded
    by LLVM under the kernels' re-association flags and let NaN past index 0
    through.
    """
    bits, mask = _float_bits(a)
    bad = False
    for i in range(bits.size):
        bad |= (bits[i] & mask) == mask
    return not bad


@cpu_function
def step_projections(x, w_ih, w_rec, bias, h):
    """Pre-activations of one step as ``(pre_x (1, B, G*H), pre_h (B, rows of w_rec), lengths)``.

    Products in dot form (:func:`matmul_nt_into`) on the weights as stored, so a
    step copies no weight matrix.
    """
    batch = x.shape[0]
    pre_x = np.empty((1, batch, w_ih.shape[0]), dtype=h.dtype)
    matmul_nt_into(x, w_ih, pre_x[0])
    pre_x[0] += bias
    pre_h = np.empty((batch, w_rec.shape[0]), dtype=h.dtype)
    matmul_nt_into(h, w_rec, pre_h)
    return pre_x, pre_h, np.ones(batch, dtype=np.int64)


@cpu_kernel
def rnn_step(x, relu, w_ih, w_hh, b_ih, b_hh, h0):
    """One Elman step for every row (B, I) -> new h (B, H); nothing saved."""
    pre_x, pre_h, lengths = step_projections(x, w_ih, w_hh, b_ih + b_hh, h0)
    h = h0.copy()
    scratch = np.empty((1,) + h0.shape, dtype=h0.dtype)
    rnn_cell_rows(0, 0, pre_x, pre_h, lengths, False, relu, h, scratch)
    return h


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
    Compiled, float32 runs on :class:`~numrnn.backends.cpu_simd.Lanes`, float64
    one value at a time (as :func:`lstm_backward_units`)."""
    _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, 0)


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


@overload(lstm_step_units, jit_options=OVERLOAD_OPTIONS, inline="always")
def _lstm_step_units_overload(a_x, a_h, b_ih, b_hh, c_prev, h, c):
    if h.dtype == types.float32:
        return _lstm_step_units_lanes
    return lambda a_x, a_h, b_ih, b_hh, c_prev, h, c: _lstm_step_units_from(a_x, a_h, b_ih, b_hh, c_prev, h, c, 0)


@cpu_kernel
def gru_step(x, reset_after, w_ih, w_hh, b_ih, b_hh, h0):
    """One GRU step (either form) for every row (B, I) -> new h (B, H); nothing saved."""
    hidden = h0.shape[1]
    bias, b_hn = gru_fold_biases(b_ih, b_hh)
    w_rec = w_hh if reset_after else w_hh[: 2 * hidden]
    pre_x, pre_h, lengths = step_projections(x, w_ih, w_rec, bias, h0)
    h = h0.copy()
    scratch = np.empty((1,) + h0.shape, dtype=h0.dtype)
    reset_h = np.empty_like(h0)
    pre_hn = np.empty_like(h0)
    gru_gates_rows(0, 0, pre_x, pre_h, lengths, False, h, reset_h)
    if not reset_after:
        matmul_nt_into(reset_h, w_hh[2 * hidden :], pre_hn)
    gru_update_rows(0, 0, pre_x, pre_h, pre_hn, b_hn, lengths, False, reset_after, h, reset_h, scratch, scratch, scratch)
    return h


#: Kernel families of the step fast path, in the order :func:`_step_layer` tests them.
STEP_KERNELS = ("rnn", "lstm", "gru")
_STEP_LSTM, _STEP_GRU = STEP_KERNELS.index("lstm"), STEP_KERNELS.index("gru")

#: Cell codes of :func:`checked_step`: ``2 * STEP_KERNELS.index(family.kernel) + family.variant``.
STEP_CELLS = {
    name: 2 * STEP_KERNELS.index(family.kernel) + int(family.variant)
    for name, family in FAMILIES.items()
    if family.kernel in STEP_KERNELS
}
_kernel_families = {family.kernel: family for family in FAMILIES.values()}
#: Gates and state arrays per step kernel family (index ``code // 2``), from the registry.
_STEP_GATES = tuple(_kernel_families[kernel].gates for kernel in STEP_KERNELS)
_STEP_STATE_SIZES = tuple(_kernel_families[kernel].state_size for kernel in STEP_KERNELS)


@cpu_function(inline=True)
def _step_layer(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c):
    """One layer of a checked step: (B, I) input, (B, H) state in, ``h`` and ``c``
    (B, H) out (``c`` untouched but for the LSTM).  False, with nothing written,
    when a weight's shape does not fit ``x`` and the state."""
    batch, inputs = x.shape
    hidden = h0.shape[1]
    kernel, variant = cell // 2, cell % 2 == 1
    gates = _STEP_GATES[kernel] * hidden
    if not (
        w_ih.shape[0] == gates
        and w_ih.shape[1] == inputs
        and w_hh.shape[0] == gates
        and w_hh.shape[1] == hidden
        and b_ih.shape[0] == gates
        and b_hh.shape[0] == gates
    ):
        return False
    if kernel == _STEP_LSTM:
        lstm_step_into(x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, c)
    elif kernel == _STEP_GRU:
        h[:] = gru_step(x, variant, w_ih, w_hh, b_ih, b_hh, h0)
    else:
        h[:] = rnn_step(x, variant, w_ih, w_hh, b_ih, b_hh, h0)
    return True


@cpu_function(inline=True)
def _check_step_border(cell, x, hidden, layers, h0, c0, state):
    """Raise ``ValueError`` unless ``x`` (B, I), the state ``h0``, ``c0`` (L, B, H) and
    the output ``state`` (S, L, B, H) fit together and hold finite values."""
    batch = x.shape[0]
    if not (
        batch > 0
        and h0.shape[0] == layers
        and h0.shape[1] == batch
        and h0.shape[2] == hidden
        and c0.shape == h0.shape
        and state.shape[0] == _STEP_STATE_SIZES[cell // 2]
        and state.shape[1:] == h0.shape
    ):
        raise ValueError("step(): shapes do not match the layer")
    if not (all_finite(x) and all_finite(h0) and all_finite(c0)):
        raise ValueError("step(): x_t or the state is not finite")


def checked_step(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, state):
    """One step of a single-layer cell with biases: the streaming fast path.

    Compiled per dtype by :func:`step_kernel`, never called as it stands.  One
    compiled call does the border checks and the step, because at B = 1 each call
    from Python costs about as much as the step itself.

    Parameters
    ----------
    cell : int
        Code from :data:`STEP_CELLS` (kernel family index and variant flag).
    x : ndarray, shape (B, I)
        Any strides (then copied to a contiguous scratch).
    w_ih, w_hh, b_ih, b_hh : ndarray
        As in :meth:`CPUBackend.layer_forward`; every shape is checked here.
    h0, c0 : ndarray, shape (1, B, H)
        The state; ``c0`` is ignored (pass ``h0``) but for the LSTM.
    state : ndarray, shape (S, 1, B, H)
        Output: the new state, ``S`` = 2 (h, c) for the LSTM, else 1 (h).  Given by
        the caller because an array made here would cost about 0.4 µs to hand back
        to Python, twice what NumPy takes to make it.

    Raises
    ------
    ValueError
        With nothing computed, when a shape does not match or ``x`` or the state
        holds NaN or inf: the caller then takes the full path, which raises the
        error naming the argument.
    """
    x = np.ascontiguousarray(x)  # a no-op for the C-contiguous signature
    _check_step_border(cell, x, w_hh.shape[1], 1, h0, c0, state)
    if not _step_layer(cell, x, w_ih, w_hh, b_ih, b_hh, h0[0], c0[0], state[0, 0], state[-1, 0]):
        raise ValueError("step(): the parameters' shapes do not match the layer")


def checked_stack_step(cell, x, weights_ih, weights_hh, biases, h0, c0, state):
    """:func:`checked_step` for any number of layers L, or no biases.

    Compiled per dtype and L by :func:`stack_step_kernel`.  The weights come as
    tuples: ``weights_ih`` and ``weights_hh`` of L arrays, ``biases`` of 2L
    (``b_ih``, ``b_hh`` of each layer in turn; zeros for a layer without biases).
    Each tuple costs Numba's dispatch about as much as two or three arrays, so the
    single-layer model keeps :func:`checked_step`.  ``h0``, ``c0`` are (L, B, H) and
    ``state`` (S, L, B, H); layer ``l`` reads the new ``h`` of layer ``l - 1``.
    """
    layers = len(weights_ih)
    x = np.ascontiguousarray(x)
    _check_step_border(cell, x, h0.shape[2], layers, h0, c0, state)
    layer_input = x
    for index in range(layers):
        ok = _step_layer(
            cell, layer_input, weights_ih[index], weights_hh[index], biases[2 * index], biases[2 * index + 1],
            h0[index], c0[index], state[0, index], state[-1, index],
        )
        if not ok:
            raise ValueError("step(): the parameters' shapes do not match the layer")
        layer_input = state[0, index]


_step_kernels = {}


def _step_signatures(dtype, weights):
    """Argument types of a step kernel: the cell code, ``x``, then ``weights(row,
    matrix)`` (the weight arguments), the state in and out, all of ``dtype``.

    Two signatures: ``x`` C-contiguous, or of any layout (a column of a
    batch-first array).  Both are needed: a C-contiguous ``x`` would match the
    second only by Numba's conversion search, which costs 0.3 µs a call.
    """
    element = numba.from_dtype(np.dtype(dtype))
    row, matrix, state, output = (types.Array(element, ndim, "C") for ndim in (1, 2, 3, 4))
    return [
        (types.intp, x, *weights(row, matrix), state, state, output)
        for x in (matrix, types.Array(element, 2, "A"))
    ]


def step_kernel(dtype):
    """:func:`checked_step` compiled for C-contiguous arrays of ``dtype`` only.

    Compiled (or loaded from the cache) on first use.  Compilation is then closed,
    so a call with arguments of any other type or layout raises ``TypeError``
    rather than compiling a new specialisation in the middle of a stream.  That
    refusal costs Numba about 100 µs, so the caller checks ``x``'s dtype first, and
    ``x`` may have any layout.
    """
    key = ("single", np.dtype(dtype))
    kernel = _step_kernels.get(key)
    if kernel is None:
        signatures = _step_signatures(dtype, lambda row, matrix: (matrix, matrix, row, row))
        kernel = _step_kernels[key] = cpu_kernel(checked_step, signatures=signatures)
    return kernel


def stack_step_kernel(dtype, layers):
    """:func:`checked_stack_step` compiled for ``layers`` layers of ``dtype`` only
    (closed to other types, as :func:`step_kernel`)."""
    key = ("stack", np.dtype(dtype), int(layers))
    kernel = _step_kernels.get(key)
    if kernel is None:
        signatures = _step_signatures(
            dtype, lambda row, matrix: (types.UniTuple(matrix, layers),) * 2 + (types.UniTuple(row, 2 * layers),)
        )
        kernel = _step_kernels[key] = cpu_kernel(checked_stack_step, signatures=signatures)
    return kernel


# ------------------------------------------------------------------ backend object

_blas_controller = None
_openmp_scan = (-1, [])  # (len(sys.modules) when scanned, OpenMP library controllers)


def _openmp_libraries():
    """threadpoolctl controllers of the OpenMP runtimes loaded now (PyTorch's among
    them), rescanned only when modules were imported since the last scan."""
    global _openmp_scan
    loaded = len(sys.modules)
    if _openmp_scan[0] != loaded:
        from threadpoolctl import ThreadpoolController

        _openmp_scan = (loaded, ThreadpoolController().select(user_api="openmp").lib_controllers)
    return _openmp_scan[1]


def single_threaded_blas():
    """Context manager for numrnn's parallel kernels: BLAS on one thread inside, and
    every OpenMP runtime's thread count as the caller left it on exit.

    The kernels parallelise with Numba's ``prange`` (batch blocks, row chunks of
    the large products) and call BLAS inside those threads; a multi-threaded BLAS
    pool on top of Numba's would oversubscribe the cores (measured here: 2-core
    training steps 5-30x slower).  Uses threadpoolctl on the BLAS libraries loaded
    when first called (SciPy's OpenBLAS, which Numba calls).

    Numba's OpenMP threading layer sets the OpenMP thread count of the runtime it
    shares with other libraries when it launches, which undid
    ``torch.set_num_threads(1)`` in a process running both.  numrnn does not change
    another library's thread settings: the OpenMP thread counts found on entry are
    put back on exit.
    """
    global _blas_controller
    if _blas_controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS Numba uses before scanning)
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController().select(user_api="blas").lib_controllers
    return _SingleThreadedBlas(_blas_controller, _openmp_libraries())


class _SingleThreadedBlas:
    """What :func:`single_threaded_blas` returns: sets each BLAS library still above
    one thread to one, and back on exit, and restores the OpenMP runtimes' thread
    counts.  Nested uses find one thread and touch nothing (threadpoolctl's own
    ``limit`` re-queries every library on each call, which cost more than a small
    layer's whole forward)."""

    def __init__(self, libraries, openmp):
        self.libraries = libraries
        self.openmp = openmp
        self.restore = []
        self.openmp_threads = []

    def __enter__(self):
        self.restore = [(library, threads) for library in self.libraries if (threads := library.get_num_threads()) != 1]
        self.openmp_threads = [(library, library.get_num_threads()) for library in self.openmp]
        for library, _ in self.restore:
            library.set_num_threads(1)
        return self

    def __exit__(self, *exc_info):
        for library, threads in self.restore:
            library.set_num_threads(threads)
        for library, threads in self.openmp_threads:
            if library.get_num_threads() != threads:
                library.set_num_threads(threads)
        return False


def _lstm_layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    buffers = (buffer("gates", 4 * hidden), buffer("c_seq", hidden), buffer("h_prev", hidden))
    state_n = lstm_forward(x, lengths, reverse, w_ih, w_hh, b_ih, b_hh, state0[0], state0[1], y, blocks, *buffers)
    return state_n, buffers + (state0[1].copy(),)  # c0, from which backward starts (the caller may change its own)


def _lstm_layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    dx, dh0, dc0, *grads = lstm_backward(x, lengths, reverse, w_ih, w_hh, dy, dstate_n[0], dstate_n[1], *buffers, blocks)
    return dx, (dh0, dc0), tuple(grads)


def _lstm_layer_step(variant, x, weights, state0):
    return lstm_step(x, *weights, state0[0], state0[1])


def _gru_layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    hidden = weights[1].shape[1]
    buffers = (buffer("gates", 3 * hidden), buffer("h_prev", hidden), buffer("aux", hidden))
    return (gru_forward(x, lengths, reverse, variant, *weights, state0[0], y, blocks, *buffers),), buffers


def _gru_layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    dx, dh0, *grads = gru_backward(x, lengths, reverse, variant, w_ih, w_hh, dy, dstate_n[0], *buffers, blocks)
    return dx, (dh0,), tuple(grads)


def _gru_layer_step(variant, x, weights, state0):
    return (gru_step(x, variant, *weights, state0[0]),)


def _rnn_layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    hidden = weights[1].shape[1]
    h_prev_seq = buffer("h_prev", hidden)
    h_n = rnn_forward(x, lengths, reverse, variant, *weights, state0[0], y, blocks, h_prev_seq)
    # h_n is returned: the caller may change it; backward's scratch for dA
    return (h_n,), (h_prev_seq, h_n.copy(), buffer("d_pre", hidden))


def _rnn_layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    dx, dh0, *grads = rnn_backward(x, lengths, reverse, variant, w_ih, w_hh, dy, dstate_n[0], *buffers, blocks)
    return dx, (dh0,), tuple(grads)


def _rnn_layer_step(variant, x, weights, state0):
    return (rnn_step(x, variant, *weights, state0[0]),)


class FamilyKernels(NamedTuple):
    """The CPU calls of one kernel family, each taking the family's ``variant`` first.

    ``forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks)`` ->
    ``(state_n, buffers)``; ``backward(variant, x, lengths, reverse, w_ih, w_hh, buffers,
    dy, dstate_n, blocks)`` -> ``(dx, dstate0, grads)``; ``step(variant, x, weights,
    state0)`` -> new state.
    """

    forward: Callable
    backward: Callable
    step: Callable


#: ``CellFamily.kernel`` -> that kernel family's CPU calls.
KERNELS = {
    "rnn": FamilyKernels(_rnn_layer_forward, _rnn_layer_backward, _rnn_layer_step),
    "lstm": FamilyKernels(_lstm_layer_forward, _lstm_layer_backward, _lstm_layer_step),
    "gru": FamilyKernels(_gru_layer_forward, _gru_layer_backward, _gru_layer_step),
}


class CPUBackend(HostArrays):
    """Runs one layer-direction at a time with the ``@njit`` drivers above.

    The layer classes (:mod:`numrnn.layers`) talk to a backend only through
    :meth:`layer_forward` and :meth:`layer_backward`; arrays are NumPy, C-contiguous
    and of the layer's dtype.
    """

    name = name
    uses_workspace = True

    def compute_context(self):
        """Context in which the layers call this backend (single-threaded BLAS)."""
        return single_threaded_blas()

    def layer_forward(self, cell, x, lengths, reverse, weights, state0, y, workspace=None):
        """Run a sequence; write outputs into ``y`` and return ``(state_n, saved)``.

        Parameters
        ----------
        cell : {"rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"}
        x : ndarray, shape (T, B, I)
        lengths : ndarray of int64, shape (B,)
        reverse : bool
        weights : tuple of ndarray
            ``(weight_ih (G*H, I), weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,))``.
        state0 : tuple of ndarray, each (B, H)
            ``(h0,)``, or ``(h0, c0)`` for the LSTM.
        y : ndarray, shape (T, B, H)
            Zero-filled output buffer.
        workspace : dict, optional
            Buffers kept between calls by the caller (one dict per layer-direction):
            what forward saves and backward's scratch are reused from it when the
            shapes match, which spares the allocator and the page faults of fresh
            large arrays (about a quarter of a medium LSTM training step).  A new
            forward overwrites what the previous one saved in the same workspace.

        Returns
        -------
        state_n : tuple of ndarray, each (B, H)
        saved : tuple
            Whatever :meth:`layer_backward` needs.
        """
        family = cell_family(cell)
        steps, batch = x.shape[:2]
        buffer = _Workspace(workspace, (steps, batch), x.dtype)
        forward = KERNELS[family.kernel].forward
        state_n, buffers = forward(family.variant, x, lengths, reverse, weights, state0, y, buffer, batch_blocks(batch))
        return state_n, (family, x, lengths, reverse, weights[0], weights[1], buffers)

    def layer_step(self, cell, x, weights, state0):
        """One timestep for every row, saving nothing.

        Parameters
        ----------
        cell : str
            As in :meth:`layer_forward`.
        x : ndarray, shape (B, I)
        weights : tuple of ndarray
            As in :meth:`layer_forward`.
        state0 : tuple of ndarray, each (B, H)

        Returns
        -------
        state : tuple of ndarray, each (B, H)
            The new state; ``state[0]`` is also the layer's output.
        """
        family = cell_family(cell)
        return KERNELS[family.kernel].step(family.variant, x, weights, state0)

    def step_kernel(self, dtype, layers=None):
        """The streaming fast path: :func:`step_kernel` (``layers`` None, a
        single layer with biases) or :func:`stack_step_kernel`."""
        return step_kernel(dtype) if layers is None else stack_step_kernel(dtype, layers)

    def layer_backward(self, saved, dy, dstate_n):
        """Backward of one :meth:`layer_forward` call; it may consume ``saved``
        (the gradients overwrite the saved gates, or the RNN's saved inputs), so call it once.

        Returns ``(dx (T, B, I), dstate0 (tuple of (B, H)), (d_weight_ih, d_weight_hh,
        d_bias_ih, d_bias_hh))``.
        """
        family, x, lengths, reverse, w_ih, w_hh, buffers = saved
        backward = KERNELS[family.kernel].backward
        return backward(family.variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, batch_blocks(x.shape[1]))


class _Workspace:
    """``buffer(name, features)``: a (T, B, features) array from ``store`` (a dict kept
    by the caller), reused when its shape and dtype match, else newly allocated there."""

    def __init__(self, store, leading, dtype):
        self.store = {} if store is None else store
        self.leading = leading
        self.dtype = dtype

    def __call__(self, name, features):
        shape = self.leading + (features,)
        array = self.store.get(name)
        if array is None or array.shape != shape or array.dtype != self.dtype:
            array = np.empty(shape, dtype=self.dtype)
            self.store[name] = array
        return array
