r"""CUDA backend: ``@cuda.jit`` kernels for one layer-direction of each cell family.

Same interface, conventions and results as :mod:`numrnn.backends.cpu` (read its
docstring: ``lengths``, reverse direction, saved buffers indexed by time and zero
where inactive).  The pointwise math is the scalar functions of
:mod:`numrnn.cells` compiled as device functions by :func:`numrnn._jit.cuda_device`;
no formula is written here.

Design of the recurrence: blocks own a batch slice
-------------------------------------------------
One launch runs the whole sequence of one layer-direction.  The batch is cut into
tiles of ``batch_tile`` sequences and each block owns one tile for all timesteps;
its threads own hidden units ``j = tid, tid + threads, ...`` and loop over time
with block barriers (``cuda.syncthreads``) only:

* forward, per step: every thread computes, for its units and every sequence of
  the tile, all gate pre-activations ``pre_x[t] + W_hh h`` (``gates x batch_tile``
  accumulators in registers, so each weight read serves the whole tile), applies
  the cell's pointwise function and writes the new ``h`` into the other half of a
  double buffer in shared memory: one barrier per step (two for the GRU in its
  Cho form, whose candidate needs ``r * h`` first);
* backward, per step: the pointwise backward of every unit, then the recurrent
  product ``dh = dA W_hh`` from the gate gradients kept in shared memory: two
  barriers per step (three for the Cho GRU).

State that only its owner thread touches (``c``, ``dh``, ``dc``, GRU scratch)
lives in the global output arrays (``c_n``, ``dh0``, ``dc0``); what other threads
read (``h``, the gate gradients) lives in dynamic shared memory.  Input
projections (``x W_ih^T + b``) before the time loop and ``dx``, the weight
gradients and the bias gradients after it are tiled shared-memory matrix products
and column sums over all ``T*B`` rows.

Why this design and not a persistent kernel with a grid-wide barrier per step
(``cuda.cg.this_grid().sync()``, units split across blocks): it needs no
cooperative launch and no co-residency of the whole grid, it works for any batch
size, and -- decisive for correctness -- it runs under Numba's CUDA simulator,
which executes blocks one after another and so cannot run a grid barrier or any
other cross-block wait.  Every line of the recurrence is therefore tested without
a GPU.  Its limits, to be measured on a device (``asv_benchmarks/gpu_check.py``):

* every block reads all of ``W_hh`` (``G*H x H``) every step.  That is cheap
  while the matrix stays in the SM's L1 cache (H up to about 64 in float32) and
  is bound by L2 bandwidth beyond, where a grid-synchronised kernel keeping a
  slice of ``W_hh`` per SM would win;
* parallelism is ``ceil(B / batch_tile)`` blocks: a small batch uses few SMs;
* the shared memory per block (``2 * batch_tile * H`` values forward,
  ``G * batch_tile * H`` backward) must fit in ``CONFIG.max_shared_bytes``, which
  bounds H (about 1500 in float64 and 3000 in float32 for the LSTM with the
  default 48 KiB); a larger layer raises ``ValueError``.

Arrays: NumPy arrays or objects with ``__cuda_array_interface__`` are accepted
everywhere; results come back as NumPy when the output buffer ``y`` (forward) or
``dy`` (backward) was NumPy, else as Numba device arrays.  What forward saves stays
on the device.  Launch sizes come from :mod:`numrnn.backends.cuda.config`.  The
layers use :mod:`numrnn.backends.cuda_layers`, which keeps everything between layers
on the device too.

Precision: device functions are compiled without fast-math (:mod:`numrnn._jit`),
so float32 ``tanh`` is libdevice's rather than the ``tanh.approx.f32``
instruction; ``tests/test_cuda_ptx.py`` checks that no kernel uses approximate
tanh or division.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda
from numba.cuda.cudadrv.devicearray import is_cuda_ndarray

from numrnn._jit import cuda_device
from numrnn.backends.cuda.arrays import DeviceArrays
from numrnn.backends.cuda.config import CONFIG, choose_batch_tile, elementwise_threads, matmul_shape, recurrence_threads
from numrnn.cells import GATES
from numrnn.cells import gru as gru_cell
from numrnn.cells import lstm as lstm_cell
from numrnn.cells import rnn as rnn_cell
from numrnn.cells import sequence

name = "cuda"

SIMULATOR = bool(getattr(numba.config, "ENABLE_CUDASIM", False))

# ------------------------------------------------------------------ device functions

lstm_pointwise = cuda_device(lstm_cell.forward)
lstm_pointwise_backward = cuda_device(lstm_cell.backward)
gru_gates = cuda_device(gru_cell.gates)
gru_candidate_update = cuda_device(gru_cell.candidate_update)
gru_candidate_update_backward = cuda_device(gru_cell.candidate_update_backward)
gru_gates_backward = cuda_device(gru_cell.gates_backward)
gru_candidate_reset_after = cuda_device(gru_cell.candidate_reset_after)
gru_candidate_reset_after_backward = cuda_device(gru_cell.candidate_reset_after_backward)
gru_reset_hidden = cuda_device(gru_cell.reset_hidden)
gru_candidate_reset_before = cuda_device(gru_cell.candidate_reset_before)
gru_reset_hidden_backward = cuda_device(gru_cell.reset_hidden_backward)
rnn_tanh = cuda_device(rnn_cell.tanh_forward)
rnn_tanh_backward = cuda_device(rnn_cell.tanh_backward)
rnn_relu = cuda_device(rnn_cell.relu_forward)
rnn_relu_backward = cuda_device(rnn_cell.relu_backward)


time_index = cuda_device(sequence.time_index)


# ------------------------------------------------------------------ elementwise kernels


@cuda.jit
def fill_3d(a, value):
    """``a[...] = value`` for a 3-D array (any strides)."""
    d1, d2 = a.shape[1], a.shape[2]
    size = a.shape[0] * d1 * d2
    for idx in range(cuda.grid(1), size, cuda.gridsize(1)):
        i = idx // (d1 * d2)
        rest = idx - i * d1 * d2
        j = rest // d2
        a[i, j, rest - j * d2] = value


@cuda.jit
def copy_3d(src, dst, swap01):
    """``dst[i, j, k] = src[j, i, k] if swap01 else src[i, j, k]`` (casts to dst's dtype)."""
    d1, d2 = dst.shape[1], dst.shape[2]
    size = dst.shape[0] * d1 * d2
    for idx in range(cuda.grid(1), size, cuda.gridsize(1)):
        i = idx // (d1 * d2)
        rest = idx - i * d1 * d2
        j = rest // d2
        k = rest - j * d2
        if swap01:
            dst[i, j, k] = src[j, i, k]
        else:
            dst[i, j, k] = src[i, j, k]


@cuda.jit
def copy_2d(src, dst, transpose):
    """``dst[i, j] = src[j, i] if transpose else src[i, j]`` (casts to dst's dtype)."""
    d1 = dst.shape[1]
    size = dst.shape[0] * d1
    for idx in range(cuda.grid(1), size, cuda.gridsize(1)):
        i = idx // d1
        j = idx - i * d1
        if transpose:
            dst[i, j] = src[j, i]
        else:
            dst[i, j] = src[i, j]


@cuda.jit
def copy_1d(src, dst):
    """``dst[:] = src`` (casts to dst's dtype)."""
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit
def multiply_3d(a, b, out):
    """``out = a * b`` elementwise for 3-D arrays."""
    d1, d2 = out.shape[1], out.shape[2]
    size = out.shape[0] * d1 * d2
    for idx in range(cuda.grid(1), size, cuda.gridsize(1)):
        i = idx // (d1 * d2)
        rest = idx - i * d1 * d2
        j = rest // d2
        k = rest - j * d2
        out[i, j, k] = a[i, j, k] * b[i, j, k]


@cuda.jit
def add_3d(a, b, out):
    """``out = a + b`` elementwise for 3-D arrays."""
    d1, d2 = out.shape[1], out.shape[2]
    size = out.shape[0] * d1 * d2
    for idx in range(cuda.grid(1), size, cuda.gridsize(1)):
        i = idx // (d1 * d2)
        rest = idx - i * d1 * d2
        j = rest // d2
        k = rest - j * d2
        out[i, j, k] = a[i, j, k] + b[i, j, k]


@cuda.jit
def combine_bias(b_ih, b_hh, n_add, out):
    """``out[i] = b_ih[i] + b_hh[i]`` for ``i < n_add``, else ``b_ih[i]`` (the bias folded
    into the input projection)."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        value = b_ih[i]
        if i < n_add:
            value += b_hh[i]
        out[i] = value


@cuda.jit
def count_nonfinite(a, count):
    """``count[0] += number of NaN/inf entries of the flat array a``."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        if not math.isfinite(a[i]):
            cuda.atomic.add(count, 0, 1)


@cuda.jit
def column_partial_sums(a, rows_per_chunk, partial):
    """``partial[c, j] = sum(a[c*rows_per_chunk : (c+1)*rows_per_chunk, j])``."""
    col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    chunk = cuda.blockIdx.y
    if col < a.shape[1]:
        start = chunk * rows_per_chunk
        stop = min(start + rows_per_chunk, a.shape[0])
        total = 0.0
        for row in range(start, stop):
            total += a[row, col]
        partial[chunk, col] = total


@cuda.jit
def column_sums(partial, out):
    """``out[j] = sum(partial[:, j])`` (second pass of the column sum)."""
    for col in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        total = 0.0
        for chunk in range(partial.shape[0]):
            total += partial[chunk, col]
        out[col] = total


# ------------------------------------------------------------------ matrix product


@functools.lru_cache(maxsize=None)
def matmul_kernel(dtype_name, block, work):
    """Tiled shared-memory matrix product for one dtype and tile size.

    The kernel computes ``c = op(a) @ op(b) (+ bias)`` with ``op`` an optional
    transpose, for any strides: a ``block x block`` thread block computes a tile
    of ``tile = block * work`` outputs per side, each thread ``work x work`` of
    them in registers, stepping through the reduction dimension ``block`` at a
    time through two shared-memory tiles.  Loads are coalesced for both layouts.
    """
    float_t = numba.from_dtype(np.dtype(dtype_name))
    tile = block * work
    stride = tile + 1  # padding against bank conflicts

    def matmul(a, b, bias, use_bias, c, trans_a, trans_b):
        """``c = op(a) @ op(b) (+ bias[col] if use_bias)``."""
        a_tile = cuda.shared.array((block, stride), float_t)  # [k][row]
        b_tile = cuda.shared.array((block, stride), float_t)  # [k][col]
        acc = cuda.local.array((work, work), float_t)
        a_reg = cuda.local.array(work, float_t)
        b_reg = cuda.local.array(work, float_t)
        rows, cols = c.shape[0], c.shape[1]
        depth = a.shape[0] if trans_a else a.shape[1]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * block + tx
        threads = block * block
        row0 = cuda.blockIdx.x * tile  # rows on x: up to 2**31 - 1 blocks
        col0 = cuda.blockIdx.y * tile
        for r in range(work):
            for q in range(work):
                acc[r, q] = 0
        for k0 in range(0, depth, block):
            for e in range(work):
                idx = tid + e * threads
                if trans_a:  # a is (depth, rows): consecutive threads read consecutive rows
                    kk = idx // tile
                    ii = idx - kk * tile
                else:  # a is (rows, depth): consecutive threads read consecutive k
                    ii = idx // block
                    kk = idx - ii * block
                value = float_t(0)
                if row0 + ii < rows and k0 + kk < depth:
                    if trans_a:
                        value = a[k0 + kk, row0 + ii]
                    else:
                        value = a[row0 + ii, k0 + kk]
                a_tile[kk, ii] = value
                if trans_b:  # b is (cols, depth)
                    jj = idx // block
                    kk = idx - jj * block
                else:  # b is (depth, cols)
                    kk = idx // tile
                    jj = idx - kk * tile
                value = float_t(0)
                if col0 + jj < cols and k0 + kk < depth:
                    if trans_b:
                        value = b[col0 + jj, k0 + kk]
                    else:
                        value = b[k0 + kk, col0 + jj]
                b_tile[kk, jj] = value
            cuda.syncthreads()
            for kk in range(block):
                for r in range(work):
                    a_reg[r] = a_tile[kk, ty + r * block]
                for q in range(work):
                    b_reg[q] = b_tile[kk, tx + q * block]
                for r in range(work):
                    for q in range(work):
                        acc[r, q] += a_reg[r] * b_reg[q]
            cuda.syncthreads()
        for r in range(work):
            row = row0 + ty + r * block
            for q in range(work):
                col = col0 + tx + q * block
                if row < rows and col < cols:
                    value = acc[r, q]
                    if use_bias:
                        value += bias[col]
                    c[row, col] = value

    return cuda.jit(matmul)


# ------------------------------------------------------------------ recurrence kernels


@functools.lru_cache(maxsize=None)
def recurrence_kernels(dtype_name, tile):
    """The forward and backward recurrence kernels for one dtype and batch tile.

    Returns a dict ``{"lstm_forward": kernel, ...}`` (see the module docstring for
    the design).  ``tile`` sequences per block is a compile-time constant so the
    per-sequence accumulators stay in registers.  Every kernel expects
    ``blockDim.x`` threads, ``ceil(B / tile)`` blocks and the dynamic shared memory
    given by :func:`shared_values` (in elements of ``dtype_name``).
    """
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
                        y[s, b, j] = 0
                        for g in range(3):
                            gates[s, b, g * hidden + j] = 0
                        h_prev_seq[s, b, j] = 0
                        aux_seq[s, b, j] = 0
                        continue
                    r_g, z_g = gru_gates(acc_r[bl], acc_z[bl])
                    gates[t, b, j] = r_g
                    gates[t, b, hidden + j] = z_g
                    if reset_after:
                        hn = acc_n[bl]
                        n_g, h_new = gru_candidate_update(gru_candidate_reset_after(pre_x[t, b, 2 * hidden + j], r_g, hn), z_g, h_old)
                        aux_seq[t, b, j] = hn
                        gates[t, b, 2 * hidden + j] = n_g
                        h_prev_seq[t, b, j] = h_old
                        y[t, b, j] = h_new
                        h_buf[nxt + bl * hidden + j] = h_new
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
                        n_g, h_new = gru_candidate_update(a_n, gates[t, b, hidden + j], h_old)
                        gates[t, b, 2 * hidden + j] = n_g
                        h_prev_seq[t, b, j] = h_old
                        y[t, b, j] = h_new
                        h_buf[nxt + bl * hidden + j] = h_new
            cuda.syncthreads()
        final = (steps % 2) * half
        for j in range(tid, hidden, threads):
            for bl in range(tile):
                b = b0 + bl
                if b < batch:
                    h_n[b, j] = h_buf[final + bl * hidden + j]

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

    functions = dict(
        lstm_forward=lstm_forward,
        lstm_backward=lstm_backward,
        gru_forward=gru_forward,
        gru_backward=gru_backward,
        rnn_forward=rnn_forward,
        rnn_backward=rnn_backward,
    )
    return {key: cuda.jit(fn) for key, fn in functions.items()}


def shared_values(cell, tile, hidden, forward):
    """Dynamic shared-memory elements one recurrence block needs."""
    if forward:
        return (3 if cell == "gru_reset_before" else 2) * tile * hidden
    gates = GATES[cell]
    return (gates + (1 if cell == "gru_reset_before" else 0)) * tile * hidden


# ------------------------------------------------------------------ host helpers


def is_device_array(obj):
    """True for Numba device arrays and objects exposing ``__cuda_array_interface__``."""
    if isinstance(obj, np.ndarray):
        return False
    return hasattr(obj, "__cuda_array_interface__") or is_cuda_ndarray(obj)


def as_device(obj):
    """A Numba device array for ``obj``: device objects are viewed, NumPy arrays copied."""
    if is_cuda_ndarray(obj):
        return obj
    if hasattr(obj, "__cuda_array_interface__"):
        return cuda.as_cuda_array(obj)
    return cuda.to_device(np.ascontiguousarray(obj))


def is_c_contiguous(array):
    """C-contiguity of a device array (Numba's and the simulator's spelling)."""
    return bool(array.is_c_contiguous())


def _blocks(size):
    threads = elementwise_threads()
    return max(1, min(-(-size // threads), 65535)), threads


def empty(shape, dtype):
    """Uninitialised device array."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """Zero-filled device array (any number of dimensions)."""
    out = empty(shape, dtype)
    if out.size:
        as3 = out.reshape(_as_3d_shape(out.shape))
        grid, threads = _blocks(out.size)
        fill_3d[grid, threads](as3, 0)
    return out


def nonfinite_count(array):
    """Number of NaN/inf values of a C-contiguous device array (one integer comes back)."""
    if array.size == 0:
        return 0
    count = cuda.to_device(np.zeros(1, dtype=np.int32))
    grid, threads = _blocks(array.size)
    count_nonfinite[grid, threads](array.reshape(array.size), count)
    return int(count.copy_to_host()[0])


def fill_zero(array):
    """``array[...] = 0`` in place for a C-contiguous device array of any shape."""
    if array.size:
        grid, threads = _blocks(array.size)
        fill_3d[grid, threads](array.reshape(_as_3d_shape(array.shape)), 0)


def accumulate(total, part):
    """``total += part`` in place, for C-contiguous device arrays of one shape."""
    if total.size:
        shape = _as_3d_shape(total.shape)
        flat_total = total.reshape(shape)
        grid, threads = _blocks(total.size)
        add_3d[grid, threads](flat_total, part.reshape(shape), flat_total)


def _as_3d_shape(shape):
    shape = tuple(shape)
    while len(shape) < 3:
        shape = (1,) + shape
    if len(shape) > 3:
        shape = (int(np.prod(shape[:-2])),) + shape[-2:]
    return shape


def copy(src, dtype=None, swap01=False):
    """A new C-contiguous device array equal to ``src`` (optionally cast, or with the first
    two axes swapped for 3-D input)."""
    src = as_device(src)
    dtype = np.dtype(dtype or src.dtype)
    shape = tuple(src.shape)
    if swap01:
        shape = (shape[1], shape[0]) + shape[2:]
    out = empty(shape, dtype)
    if out.size == 0:
        return out
    grid, threads = _blocks(out.size)
    if src.ndim == 3:
        copy_3d[grid, threads](src, out, swap01)
    elif src.ndim == 2:
        copy_2d[grid, threads](src, out, False)
    elif src.ndim == 1:
        copy_1d[grid, threads](src, out)
    else:
        raise ValueError(f"copy supports 1-D to 3-D arrays, got {src.ndim}-D")
    return out


def contiguous(array, dtype):
    """``array`` on the device, C-contiguous and of ``dtype`` (copied only when needed)."""
    if not is_device_array(array):
        return cuda.to_device(np.ascontiguousarray(array, dtype=dtype))
    array = as_device(array)
    if array.dtype == np.dtype(dtype) and is_c_contiguous(array):
        return array
    return copy(array, dtype)


def column_sum(matrix):
    """Sum over the rows of a 2-D device array: shape (cols,)."""
    rows, cols = matrix.shape
    per_chunk = max(1, int(CONFIG.reduce_rows_per_chunk))
    chunks = max(1, -(-rows // per_chunk))
    partial = empty((chunks, cols), matrix.dtype)
    threads = max(1, min(elementwise_threads(), cols))
    column_partial_sums[(-(-cols // threads), chunks), threads](matrix, per_chunk, partial)
    out = empty((cols,), matrix.dtype)
    grid, threads = _blocks(cols)
    column_sums[grid, threads](partial, out)
    return out


def matmul(a, b, out, trans_a=False, trans_b=False, bias=None):
    """``out = op(a) @ op(b) (+ bias)`` with the tiled kernel (all device arrays, 2-D)."""
    rows, cols = out.shape
    if rows == 0 or cols == 0:
        return out
    block, work = matmul_shape()
    kernel = matmul_kernel(np.dtype(out.dtype).name, block, work)
    tile = block * work
    use_bias = bias is not None
    if bias is None:
        bias = _placeholder(out.dtype)  # never read
    kernel[(-(-rows // tile), -(-cols // tile)), (block, block)](a, b, bias, use_bias, out, trans_a, trans_b)
    return out


_placeholders: dict = {}


def _placeholder(dtype):
    """A one-element device array standing in for an unused array argument."""
    key = np.dtype(dtype).name
    if key not in _placeholders:
        _placeholders[key] = empty((1,), key)
    return _placeholders[key]


def _sm_count():
    if CONFIG.sm_count is not None:
        return int(CONFIG.sm_count)
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # the simulator's device has no attributes
        return 16


def _recurrence_launch(cell, batch, hidden, dtype, forward):
    """(kernels, grid, threads, shared bytes) for one recurrence launch."""
    itemsize = np.dtype(dtype).itemsize
    weight_bytes = GATES[cell] * hidden * hidden * itemsize
    tile = choose_batch_tile(batch, weight_bytes, _sm_count())
    while tile > 1 and shared_values(cell, tile, hidden, forward) * itemsize > CONFIG.max_shared_bytes:
        tile //= 2
    shared_bytes = shared_values(cell, tile, hidden, forward) * itemsize
    if shared_bytes > CONFIG.max_shared_bytes:
        raise ValueError(
            f"hidden_size={hidden} is too large for the CUDA backend's {cell} in {np.dtype(dtype).name}: "
            f"one block needs {shared_bytes} bytes of shared memory, more than {CONFIG.max_shared_bytes}; "
            'use backend="cpu" or float32'
        )
    kernels = recurrence_kernels(np.dtype(dtype).name, tile)
    return kernels, -(-batch // tile), recurrence_threads(hidden), shared_bytes


def check_hidden_size(cell, hidden, dtype):
    """Raise ``ValueError`` if a layer of this size cannot run on this backend."""
    for forward in (True, False):
        itemsize = np.dtype(dtype).itemsize
        needed = shared_values(cell, 1, hidden, forward) * itemsize
        if needed > CONFIG.max_shared_bytes:
            raise ValueError(
                f"hidden_size={hidden} is too large for the CUDA backend's {cell} in {np.dtype(dtype).name} "
                f"(a block needs {needed} bytes of shared memory, the limit is {CONFIG.max_shared_bytes}); "
                'use backend="cpu" or a smaller hidden_size'
            )


_ones_cache: dict = {}


def _ones(batch):
    """Device lengths of 1 for ``batch`` rows (cached: step() is latency bound)."""
    if batch not in _ones_cache:
        if len(_ones_cache) > 64:
            _ones_cache.clear()
        _ones_cache[batch] = cuda.to_device(np.ones(batch, dtype=np.int64))
    return _ones_cache[batch]


def _to_host(array):
    return array.copy_to_host()


# ------------------------------------------------------------------ backend object


class CUDABackend(DeviceArrays):
    """Runs one layer-direction at a time with the CUDA kernels above.

    The same two methods as :class:`numrnn.backends.cpu.CPUBackend`;
    arguments may be NumPy arrays or device arrays (``__cuda_array_interface__``).
    """

    name = name
    device = True

    def layer_forward(self, cell, x, lengths, reverse, weights, state0, y):
        """Run a sequence; write outputs into ``y`` and return ``(state_n, saved)``.

        Same parameters as :meth:`numrnn.backends.cpu.CPUBackend.layer_forward`.
        ``state_n`` is NumPy when ``y`` is a NumPy array, else device arrays; ``saved``
        holds device arrays.
        """
        host_y = not is_device_array(y)
        dtype = np.dtype(y.dtype)
        x = contiguous(x, dtype)
        steps, batch, features = x.shape
        w_ih, w_hh, b_ih, b_hh = (contiguous(w, dtype) for w in weights)
        lengths = contiguous(lengths, np.int64)
        gate_width, hidden = w_hh.shape
        check_hidden_size(cell, hidden, dtype)  # fail here, not in backward
        y_dev = empty((steps, batch, hidden), dtype) if host_y else as_device(y)

        # input projection of all timesteps with the folded bias
        bias = empty((gate_width,), dtype)
        grid, threads = _blocks(gate_width)
        n_add = gru_cell.FOLDED_GATES * hidden if cell in ("gru", "gru_reset_before") else gate_width
        combine_bias[grid, threads](b_ih, b_hh, n_add, bias)
        pre_x = empty((steps, batch, gate_width), dtype)
        matmul(x.reshape(steps * batch, features), w_ih, pre_x.reshape(steps * batch, gate_width),
               trans_b=True, bias=bias)
        w_t = empty((hidden, gate_width), dtype)
        grid, threads = _blocks(w_t.size)
        copy_2d[grid, threads](w_hh, w_t, True)

        kernels, grid, threads, shared = _recurrence_launch(cell, batch, hidden, dtype, forward=True)
        h0 = contiguous(state0[0], dtype)
        h_n = empty((batch, hidden), dtype)
        per_step = (steps, batch, hidden)
        if cell == "lstm":
            c0 = contiguous(state0[1], dtype)
            c_n = empty((batch, hidden), dtype)
            buffers = (empty((steps, batch, 4 * hidden), dtype), empty(per_step, dtype),
                       empty(per_step, dtype), empty(per_step, dtype))
            kernels["lstm_forward"][grid, threads, 0, shared](
                pre_x, w_t, lengths, reverse, h0, c0, y_dev, h_n, c_n, *buffers)
            state_n = (h_n, c_n)
        elif cell in ("gru", "gru_reset_before"):
            buffers = (empty((steps, batch, 3 * hidden), dtype), empty(per_step, dtype), empty(per_step, dtype))
            kernels["gru_forward"][grid, threads, 0, shared](
                pre_x, w_t, b_hh, lengths, reverse, cell == "gru", h0, y_dev, h_n, *buffers)
            state_n = (h_n,)
        else:
            buffers = (empty(per_step, dtype), empty(per_step, dtype))
            kernels["rnn_forward"][grid, threads, 0, shared](
                pre_x, w_t, lengths, reverse, cell == "rnn_relu", h0, y_dev, h_n, *buffers)
            state_n = (h_n,)
        if host_y:
            y[...] = y_dev.copy_to_host()
            state_n = tuple(_to_host(s) for s in state_n)
        return state_n, (cell, x, lengths, reverse, w_ih, w_hh, tuple(buffers))

    def layer_step(self, cell, x, weights, state0):
        """One timestep for every row, saving nothing useful (streaming inference).

        Parameters as :meth:`numrnn.backends.cpu.CPUBackend.layer_step`: ``x`` (B, I),
        ``state0`` a tuple of (B, H).  Returns the new state tuple (``state[0]`` is the
        output): NumPy when ``x`` is a NumPy array, else device arrays.
        """
        host = not is_device_array(x)
        batch = x.shape[0]
        hidden = weights[1].shape[1]
        dtype = np.dtype(weights[1].dtype) if host else np.dtype(state0[0].dtype)
        x3 = np.ascontiguousarray(x, dtype=dtype)[None] if host else contiguous(x, dtype).reshape(1, batch, x.shape[1])
        lengths = _ones(batch)
        y = empty((1, batch, hidden), dtype)
        state_n, _ = self.layer_forward(cell, x3, lengths, False, weights, state0, y)
        if host:
            return tuple(_to_host(s) for s in state_n)
        return state_n

    def layer_backward(self, saved, dy, dstate_n):
        """Backward of one :meth:`layer_forward` call.

        Returns ``(dx (T, B, I), dstate0 (tuple of (B, H)), (d_weight_ih, d_weight_hh,
        d_bias_ih, d_bias_hh))``: NumPy when ``dy`` is a NumPy array, else device arrays.
        """
        cell, x, lengths, reverse, w_ih, w_hh, buffers = saved
        host = not is_device_array(dy)
        dtype = np.dtype(x.dtype)
        dy = as_device(dy)
        if dy.dtype != dtype:
            dy = copy(dy, dtype)
        steps, batch, features = x.shape
        gate_width, hidden = w_hh.shape
        rows = steps * batch
        dstate_n = tuple(contiguous(s, dtype) for s in dstate_n)
        kernels, grid, threads, shared = _recurrence_launch(cell, batch, hidden, dtype, forward=False)
        dh0 = empty((batch, hidden), dtype)
        d_w_hh = empty((gate_width, hidden), dtype)
        if cell == "lstm":
            gates, c_seq, h_prev_seq, c_prev_seq = buffers
            d_pre_x = d_pre_h = empty((steps, batch, gate_width), dtype)
            dc0 = empty((batch, hidden), dtype)
            kernels["lstm_backward"][grid, threads, 0, shared](
                dy, w_hh, lengths, reverse, dstate_n[0], dstate_n[1], gates, c_seq, c_prev_seq, d_pre_x, dh0, dc0)
            dstate0 = (dh0, dc0)
        elif cell in ("gru", "gru_reset_before"):
            gates, h_prev_seq, aux_seq = buffers
            d_pre_x = empty((steps, batch, gate_width), dtype)
            d_pre_h = empty((steps, batch, gate_width), dtype)
            scratch = (empty((batch, hidden), dtype), empty((batch, hidden), dtype))
            kernels["gru_backward"][grid, threads, 0, shared](
                dy, w_hh, lengths, reverse, cell == "gru", dstate_n[0], gates, h_prev_seq, aux_seq,
                d_pre_x, d_pre_h, dh0, *scratch)
            dstate0 = (dh0,)
        else:
            h_seq, h_prev_seq = buffers
            d_pre_x = d_pre_h = empty((steps, batch, gate_width), dtype)
            kernels["rnn_backward"][grid, threads, 0, shared](
                dy, w_hh, lengths, reverse, cell == "rnn_relu", dstate_n[0], h_seq, d_pre_x, dh0)
            dstate0 = (dh0,)

        d_pre_x2 = d_pre_x.reshape(rows, gate_width)
        d_pre_h2 = d_pre_h.reshape(rows, gate_width)
        x2 = x.reshape(rows, features)
        h_prev2 = h_prev_seq.reshape(rows, hidden)
        dx = empty((steps, batch, features), dtype)
        matmul(d_pre_x2, w_ih, dx.reshape(rows, features))
        d_w_ih = empty((gate_width, features), dtype)
        matmul(d_pre_x2, x2, d_w_ih, trans_a=True)
        if cell == "gru_reset_before":
            # the n rows of W_hh multiply r * h_prev (saved in aux_seq), not h_prev
            matmul(d_pre_h2[:, : 2 * hidden], h_prev2, d_w_hh[: 2 * hidden], trans_a=True)
            matmul(d_pre_h2[:, 2 * hidden :], buffers[2].reshape(rows, hidden), d_w_hh[2 * hidden :], trans_a=True)
        else:
            matmul(d_pre_h2, h_prev2, d_w_hh, trans_a=True)
        grads = (d_w_ih, d_w_hh, column_sum(d_pre_x2), column_sum(d_pre_h2))
        if host:
            return _to_host(dx), tuple(_to_host(s) for s in dstate0), tuple(_to_host(g) for g in grads)
        return dx, dstate0, grads


# ------------------------------------------------------------------ signatures (PTX checks)


def kernel_signatures(dtype, batch_tile=2, matmul_block=16, matmul_work=4):
    """``(name, python function, argument types)`` of every kernel as the backend launches it.

    For ``numba.cuda.compile_ptx``, which type-checks and compiles a kernel for a
    given compute capability without a GPU (the simulator checks logic, not types).
    Strided arguments (``y`` and ``dy`` views, column slices in the Cho GRU's weight
    gradient) are given layout ``"A"``, the rest ``"C"``.
    """
    from numba import types

    f = numba.from_dtype(np.dtype(dtype))

    def arr(ndim, layout="C", of=f):
        return types.Array(of, ndim, layout)

    i64, boolean = types.int64, types.boolean
    lengths = arr(1, of=i64)
    rec = recurrence_kernels(np.dtype(dtype).name, batch_tile)
    mm = matmul_kernel(np.dtype(dtype).name, matmul_block, matmul_work)
    c1, c2, c3, a2, a3 = arr(1), arr(2), arr(3), arr(2, "A"), arr(3, "A")
    signatures = [
        ("lstm_forward", rec["lstm_forward"], (c3, c2, lengths, boolean, c2, c2, a3, c2, c2, c3, c3, c3, c3)),
        ("lstm_backward", rec["lstm_backward"], (a3, c2, lengths, boolean, c2, c2, c3, c3, c3, c3, c2, c2)),
        ("gru_forward", rec["gru_forward"], (c3, c2, c1, lengths, boolean, boolean, c2, a3, c2, c3, c3, c3)),
        ("gru_backward", rec["gru_backward"],
         (a3, c2, lengths, boolean, boolean, c2, c3, c3, c3, c3, c3, c2, c2, c2)),
        ("rnn_forward", rec["rnn_forward"], (c3, c2, lengths, boolean, boolean, c2, a3, c2, c3, c3)),
        ("rnn_backward", rec["rnn_backward"], (a3, c2, lengths, boolean, boolean, c2, c3, c3, c2)),
        ("matmul", mm, (c2, c2, c1, boolean, c2, boolean, boolean)),
        ("matmul_strided", mm, (a2, c2, c1, boolean, a2, boolean, boolean)),
        ("fill_3d", fill_3d, (c3, i64)),
        ("copy_3d", copy_3d, (a3, c3, boolean)),
        ("copy_3d_from_float64", copy_3d, (arr(3, "A", types.float64), c3, boolean)),
        ("copy_2d", copy_2d, (a2, c2, boolean)),
        ("copy_1d", copy_1d, (arr(1, "A"), c1)),
        ("multiply_3d", multiply_3d, (c3, c3, c3)),
        ("add_3d", add_3d, (c3, c3, c3)),
        ("combine_bias", combine_bias, (c1, c1, i64, c1)),
        ("count_nonfinite", count_nonfinite, (arr(1, "A"), arr(1, of=types.int32))),
        ("column_partial_sums", column_partial_sums, (c2, i64, c2)),
        ("column_sums", column_sums, (c2, c1)),
    ]
    return [(label, kernel.py_func, args) for label, kernel, args in signatures]
