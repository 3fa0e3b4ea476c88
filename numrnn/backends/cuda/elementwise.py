"""Elementwise CUDA kernels (fill, copy, multiply, add, bias folding, NaN/inf count) and
the host helpers that allocate, copy and launch them on device arrays.

Every kernel loops with a grid stride, so any launch size covers any array; launch
sizes come from :func:`blocks` (``CONFIG.elementwise_threads``).  Each kernel's
parameters are declared once in :data:`PARAMS` (see :mod:`numrnn.backends.cuda.common`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.cuda.cudadrv.devicearray import is_cuda_ndarray

from numrnn.backends.cuda.common import params
from numrnn.backends.cuda.config import elementwise_threads

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


#: the parameters of every elementwise kernel, declared once
PARAMS = {
    "fill_3d": params("a:C3 value:I"),
    "copy_3d": params("src:A3 dst:C3 swap01:B"),
    "copy_2d": params("src:A2 dst:C2 transpose:B"),
    "copy_1d": params("src:A1 dst:C1"),
    "multiply_3d": params("a:C3 b:C3 out:C3"),
    "add_3d": params("a:C3 b:C3 out:C3"),
    "combine_bias": params("b_ih:C1 b_hh:C1 n_add:I out:C1"),
    "count_nonfinite": params("a:A1 count:N32"),
}


def signatures():
    """``(label, kernel, params)`` of every elementwise kernel for the PTX check (one extra:
    the cast from float64 of :func:`copy`)."""
    kernels = dict(fill_3d=fill_3d, copy_3d=copy_3d, copy_2d=copy_2d, copy_1d=copy_1d, multiply_3d=multiply_3d,
                   add_3d=add_3d, combine_bias=combine_bias, count_nonfinite=count_nonfinite)
    out = [(label, kernels[label], declared) for label, declared in PARAMS.items()]
    out.append(("copy_3d_from_float64", copy_3d, params("src:F64A3 dst:C3 swap01:B")))
    return out


# ------------------------------------------------------------------ host helpers


def blocks(size):
    """``(grid, threads)`` of a grid-stride elementwise launch over ``size`` items."""
    threads = elementwise_threads()
    return max(1, min(-(-size // threads), 65535)), threads


_blocks = blocks  # the name the optimiser kernels and the array ops use


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


def empty(shape, dtype):
    """Uninitialised device array."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """Zero-filled device array (any number of dimensions)."""
    out = empty(shape, dtype)
    if out.size:
        as3 = out.reshape(_as_3d_shape(out.shape))
        grid, threads = blocks(out.size)
        fill_3d[grid, threads](as3, 0)
    return out


def nonfinite_count(array):
    """Number of NaN/inf values of a C-contiguous device array (one integer comes back)."""
    if array.size == 0:
        return 0
    count = cuda.to_device(np.zeros(1, dtype=np.int32))
    grid, threads = blocks(array.size)
    count_nonfinite[grid, threads](array.reshape(array.size), count)
    return int(count.copy_to_host()[0])


def fill_zero(array):
    """``array[...] = 0`` in place for a C-contiguous device array of any shape."""
    if array.size:
        grid, threads = blocks(array.size)
        fill_3d[grid, threads](array.reshape(_as_3d_shape(array.shape)), 0)


def accumulate(total, part):
    """``total += part`` in place, for C-contiguous device arrays of one shape."""
    if total.size:
        shape = _as_3d_shape(total.shape)
        flat_total = total.reshape(shape)
        grid, threads = blocks(total.size)
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
    grid, threads = blocks(out.size)
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


_placeholders: dict = {}


def _placeholder(dtype):
    """A one-element device array standing in for an unused array argument."""
    key = np.dtype(dtype).name
    if key not in _placeholders:
        _placeholders[key] = empty((1,), key)
    return _placeholders[key]
