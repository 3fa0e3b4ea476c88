"""Matrix kernels of the CUDA backend: the tiled matrix product and the column sums.

The input projection ``x W_ih^T + b`` before a recurrence and ``dx``, the weight and
bias gradients after it run here over all ``T*B`` rows.  Parameters are declared once
in :data:`PARAMS` (see :mod:`numrnn.backends.cuda.common`).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from numrnn.backends.cuda.common import params
from numrnn.backends.cuda.config import CONFIG, elementwise_threads, matmul_shape
from numrnn.backends.cuda.elementwise import _placeholder, blocks, empty

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


#: the parameters of every matrix kernel, declared once
PARAMS = {
    "matmul": params("a:C2 b:C2 bias:C1 use_bias:B c:C2 trans_a:B trans_b:B"),
    "column_partial_sums": params("a:C2 rows_per_chunk:I partial:C2"),
    "column_sums": params("partial:C2 out:C1"),
}


def signatures(dtype, matmul_block=16, matmul_work=4):
    """``(label, kernel, params)`` of the matrix kernels for the PTX check (plus the strided
    matmul of the Cho GRU's weight gradient)."""
    mm = matmul_kernel(np.dtype(dtype).name, matmul_block, matmul_work)
    return [
        ("matmul", mm, PARAMS["matmul"]),
        ("matmul_strided", mm, params("a:A2 b:C2 bias:C1 use_bias:B c:A2 trans_a:B trans_b:B")),
        ("column_partial_sums", column_partial_sums, PARAMS["column_partial_sums"]),
        ("column_sums", column_sums, PARAMS["column_sums"]),
    ]


def column_sum(matrix):
    """Sum over the rows of a 2-D device array: shape (cols,)."""
    rows, cols = matrix.shape
    per_chunk = max(1, int(CONFIG.reduce_rows_per_chunk))
    chunks = max(1, -(-rows // per_chunk))
    partial = empty((chunks, cols), matrix.dtype)
    threads = max(1, min(elementwise_threads(), cols))
    column_partial_sums[(-(-cols // threads), chunks), threads](matrix, per_chunk, partial)
    out = empty((cols,), matrix.dtype)
    grid, threads = blocks(cols)
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
