"""Products and array passes of the CPU drivers: register-tile and BLAS products, the
input projection, the weight and input gradients over all ``T*B`` rows."""

from __future__ import annotations

import numba
import numpy as np

from numrnn._jit import cpu_function, cpu_kernel
from numrnn.backends.cpu.simd import lane_count, matmul_packed_into, matvec_into, pack_panels, packs_evenly
from numrnn.backends.cpu.simd import matmul_into as simd_matmul_into
from numrnn.backends.cpu.threads import PRODUCT_CHUNKS, block_bounds, partial_chunks, sum_partials


#: Products with at most this many rows, or at most :data:`SIMD_PRODUCT_MAX_WORK`
#: multiply-adds, run in register tiles (:func:`numrnn.backends.cpu.simd.matmul_into`):
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
        if bias is not None:  # loops, not out[i] += bias: see copy_block
            for i in range(rows):
                row = out[i]
                for j in range(cols):
                    row[j] += bias[j]


@cpu_function
def step_weights(b):
    """Weights ``b`` (K, N) of a per-step product, as ``(b, panels)`` for
    :func:`step_product`: ``panels`` is :func:`~numrnn.backends.cpu.simd.pack_panels`
    ``(b)``, or empty where the columns do not fill whole panels.  Packed once per
    call, used at every step."""
    if packs_evenly(b):
        return b, pack_panels(b)
    return b, np.empty((0, b.shape[0], 2 * lane_count(b[0])), dtype=b.dtype)


@cpu_function
def step_product(a, weights, out):
    """``out[...] = a @ b`` for the time loops, ``weights`` from :func:`step_weights`.

    Always register tiles, never BLAS: packed panels
    (:func:`~numrnn.backends.cpu.simd.matmul_packed_into`, faster than BLAS on these
    shapes: README, Performance) where the weights were packed, else
    :func:`~numrnn.backends.cpu.simd.matmul_into` on ``b`` as it is.  Both compute
    each output as the same fused multiply-adds in the same order, whichever tile
    a row falls in, so a row's result does not depend on how the batch was split
    into blocks, and so not on the thread count.  BLAS's result for a row could
    (its kernels depend on the number of rows).
    """
    b, panels = weights
    if panels.shape[0] > 0:
        matmul_packed_into(a, panels, out, None)  # None passed, not omitted: one specialisation
    else:
        simd_matmul_into(a, b, out, None)


@cpu_function
def matmul_nt_into(a, b, out):
    """``out[...] = a @ b.T`` for small C-contiguous 2-D arrays, without BLAS.

    One :func:`~numrnn.backends.cpu.simd.matvec_into` per row of ``a``: dot
    products with the rows of ``b`` as stored, so the streaming step kernels
    (:func:`lstm_step` and friends) need no transposed copy of the weights.
    """
    for i in range(a.shape[0]):
        matvec_into(b, a[i], out[i])


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
    (:func:`~numrnn.backends.cpu.simd.matmul_packed_into`) where its columns fill
    whole panels, else :func:`product_into`."""
    rows = a.shape[0]
    chunks = 1 if rows * a.shape[1] * b.shape[1] < PARALLEL_PRODUCT_MIN_WORK else min(PRODUCT_CHUNKS, rows)
    weights = step_weights(b)
    panels = weights[1]
    packed = panels.shape[0] > 0
    blocks = (rows + PACKED_ROW_BLOCK - 1) // PACKED_ROW_BLOCK
    # one parallel loop for both cases: each prange loop is a further function
    # (gufunc) for Numba to compile
    for chunk in numba.prange(chunks):
        if packed:
            first, last = block_bounds(chunk, chunks, blocks)
            for block in range(first, last):
                lo, hi = block * PACKED_ROW_BLOCK, min(rows, (block + 1) * PACKED_ROW_BLOCK)
                matmul_packed_into(a[lo:hi], panels, out[lo:hi], bias)
        else:
            lo, hi = block_bounds(chunk, chunks, rows)
            product_into(a[lo:hi], b, out[lo:hi], bias)


@cpu_kernel(parallel=True)
def matmul_tn(a, b):
    """``a.T @ b`` for tall ``a`` (N, G) and ``b`` (N, K): partial products over row
    chunks in parallel, then their sum."""
    rows = a.shape[0]
    if rows * a.shape[1] * b.shape[1] < PARALLEL_PRODUCT_MIN_WORK:
        out = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
        product_into(a.T, b, out, None)
        return out
    chunks = partial_chunks(rows, a.shape[1] * b.shape[1], a.itemsize)
    partial = np.empty((chunks, a.shape[1], b.shape[1]), dtype=a.dtype)
    for chunk in numba.prange(chunks):
        lo, hi = block_bounds(chunk, chunks, rows)
        product_into(a[lo:hi].T, b[lo:hi], partial[chunk], None)
    return sum_partials(partial)


# project_inputs and input_gradient are Python, not kernels: a cached kernel that calls
# a parallel kernel (matmul_rows) segfaults when loaded from the cache if, where it was
# compiled, the parallel kernel had itself been loaded from the cache, not compiled
# (the names of the parallel loop's functions then differ between the two; measured
# here: matmul_rows run once in one process, an LSTM forward in a second, a third
# process crashed on its first forward).  Numba issues 8578 and 10128.


def project_inputs(x, w_ih, bias, out):
    """``out = x @ w_ih.T + bias`` for all timesteps at once: (T, B, I) -> (T, B, G*H)
    (``x`` and ``out`` C-contiguous)."""
    steps, batch, features = x.shape
    rows = out.reshape(steps * batch, w_ih.shape[0])
    matmul_rows(x.reshape(steps * batch, features), np.ascontiguousarray(w_ih.T), rows, bias)


@cpu_function
def copy_into(source, target):
    """``target[:] = source`` for 1-D rows, as a plain loop: inside the time loops
    Numba's slice assignment costs more than copying a short row."""
    for j in range(target.shape[0]):
        target[j] = source[j]


@cpu_function(inline=True)
def copy_block(source, target, start):
    """``target[start:start + len(source)] = source`` for 2-D arrays, as plain loops.

    The drivers copy arrays this way, not by slice assignment: a slice assignment
    from an array compiles Numba's shape-mismatch error message (string formatting
    of both shapes, about 4 s of a cold start for the ranks the drivers used).
    Inlined: a copy is not worth a specialisation per caller.
    """
    for i in range(source.shape[0]):
        row = source[i]
        out = target[start + i]
        for j in range(row.shape[0]):
            out[j] = row[j]


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
    time loop) the ``weight_hh`` gradient is None.

    Each chunk forms the transposed products ``x_c^T dA_c`` (I, G*H) and ``h_c^T dA_c``
    (H, G*H): their right operand is the gate gradients as stored, so with few inputs
    or hidden units (the forecasters' windows: I = 1, H = 32) they run on register
    tiles over whole vectors of gates rather than on BLAS with G*H rows (0.41 against
    0.62 ms at T*B = 4608, G*H = 128, I = 1, H = 32, float32, one thread).  The sums
    are transposed once.
    """
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
    partial_ih = np.empty((chunks, features, gates), dtype=d_pre.dtype)
    partial_hh = np.empty((chunks, hidden, gates), dtype=d_pre.dtype)
    partial_b = np.empty((chunks, gates), dtype=d_pre.dtype)
    for chunk in numba.prange(chunks):
        lo, hi = block_bounds(chunk, chunks, rows)
        d_chunk = d_rows[lo:hi]
        product_into(x_rows[lo:hi].T, d_chunk, partial_ih[chunk], None)
        if h_prev_seq is not None:
            product_into(h_prev_seq.reshape(rows, hidden)[lo:hi].T, d_chunk, partial_hh[chunk], None)
        copy_into(column_sums(d_chunk), partial_b[chunk])
    d_b = sum_partials(partial_b)
    d_w_ih = np.ascontiguousarray(sum_partials(partial_ih).T)
    if h_prev_seq is None:
        return d_w_ih, None, d_b, d_b.copy()
    return d_w_ih, np.ascontiguousarray(sum_partials(partial_hh).T), d_b, d_b.copy()


def input_gradient(d_pre_x, w_ih):
    """``dx = dA_x @ W_ih``: (T, B, G*H) -> (T, B, I) (``d_pre_x`` C-contiguous; Python,
    as :func:`project_inputs`)."""
    steps, batch, gates = d_pre_x.shape
    out = np.empty((steps * batch, w_ih.shape[1]), dtype=d_pre_x.dtype)
    matmul_rows(d_pre_x.reshape(steps * batch, gates), w_ih, out, None)
    return out.reshape(steps, batch, w_ih.shape[1])


@cpu_function
def step_projections(x, w_ih, w_rec, bias, h):
    """Pre-activations of one step as ``(pre_x (1, B, G*H), pre_h (B, rows of w_rec), lengths)``.

    Products in dot form (:func:`matmul_nt_into`) on the weights as stored, so a
    step copies no weight matrix.
    """
    batch = x.shape[0]
    pre_x = np.empty((1, batch, w_ih.shape[0]), dtype=h.dtype)
    matmul_nt_into(x, w_ih, pre_x[0])
    for r in range(batch):  # loops, not pre_x[0] += bias: see copy_block
        row = pre_x[0, r]
        for j in range(row.shape[0]):
            row[j] += bias[j]
    pre_h = np.empty((batch, w_rec.shape[0]), dtype=h.dtype)
    matmul_nt_into(h, w_rec, pre_h)
    return pre_x, pre_h, np.ones(batch, dtype=np.int64)
