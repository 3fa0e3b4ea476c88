r"""Optimiser updates and gradient clipping on the GPU, for parameters held as device arrays.

:mod:`numrnn.optim.optimizers` hands every key whose parameter and gradient are device arrays (Numba
``DeviceNDArray``, or anything exposing ``__cuda_array_interface__``) to this module; nothing
of them, nor of the optimiser state, is copied to the host:

* validation (:func:`check_pair`, :func:`check_clippable`): dtype, shape and contiguity from
  the array interface, NaN/inf with :func:`numrnn.backends.cuda.count_nonfinite`, which returns
  one integer;
* updates (:func:`sgd_step`, :func:`adam_step`): elementwise kernels over the flattened,
  C-contiguous arrays that apply the *same* scalar rules as the NumPy path
  (:func:`numrnn.optim.rules.sgd_rule`, :func:`numrnn.optim.rules.adam_rule`), compiled here as device
  functions.  No formula is written in this module;
* clipping (:func:`norm_part`, :func:`scale`, :func:`clamp`): a two-pass reduction (per-block
  partial results in shared memory, then one block over the partials, in float64) that returns
  one float per array, and in-place scale / clamp kernels.

Hyperparameters and per-step scalars (``lr``, bias corrections) are computed on the host by the
optimiser and passed as kernel arguments of the arrays' dtype.  Launch sizes come from
:mod:`numrnn.backends.cuda.config` (``elementwise_threads``), through
:func:`numrnn.backends.cuda._blocks`; the kernels loop with a grid stride, so any size works.

The rules call ``sqrt``, which :mod:`numrnn.optim.rules` binds to ``numpy.sqrt`` (arrays); here each
rule is rebuilt over a copy of its globals with ``sqrt`` bound to ``math.sqrt``, which numba-cuda
compiles to the correctly rounded ``sqrt.rn`` of the argument's precision.  This module imports
only the leaf :mod:`numrnn.optim.rules`, never the optimisers (which import it lazily), so there
is no import cycle.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from numrnn._jit import cuda_device, with_globals
from numrnn.backends import cuda as kernels
from numrnn.backends.cuda import empty, fill_zero, zeros
from numrnn.backends.cuda.config import MAX_THREADS
import numrnn.optim.rules as rules  # the leaf of numrnn.optim: no optim <-> cuda.optim cycle

__all__ = [
    "adam_step",
    "check_clippable",
    "check_pair",
    "clamp",
    "empty",
    "fill_zero",
    "kernel_signatures",
    "norm_part",
    "scale",
    "sgd_step",
    "state_to_device",
    "zeros",
]


def _device_rule(rule):
    """Compile a scalar rule of :mod:`numrnn.optim.rules` as a CUDA device function, ``sqrt`` -> ``math.sqrt``."""
    return cuda_device(with_globals(rule, {**rule.__globals__, "sqrt": math.sqrt}))


sgd_update = _device_rule(rules.sgd_rule)
adam_update = _device_rule(rules.adam_rule)
clamp_value = _device_rule(rules.clamp_rule)


@cuda.jit(device=True)
def _max_keep_nan(a, b):
    """``max(a, b)`` that returns NaN when either is NaN (as ``numpy.max``)."""
    return b if (b > a or math.isnan(b)) else a


# ------------------------------------------------------------------ kernels


@cuda.jit
def sgd_kernel(param, grad, momentum_buffer, lr, weight_decay, momentum, grad_scale, nesterov, first_step):
    """:func:`numrnn.optim.rules.sgd_rule` on every element of the flat arrays, in place.

    ``momentum_buffer`` is read (unless ``first_step``) and written only when ``momentum != 0``;
    otherwise any one-element array may stand in for it.
    """
    use_buffer = momentum != 0
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        buffer_value = momentum_buffer[i] if use_buffer else grad[i]
        new_param, new_buffer = sgd_update(param[i], grad[i], buffer_value, lr, weight_decay, momentum,
                                           grad_scale, nesterov, first_step)
        param[i] = new_param
        if use_buffer:
            momentum_buffer[i] = new_buffer


@cuda.jit
def adam_kernel(param, grad, exp_avg, exp_avg_sq, beta1, grad_scale1, beta2, grad_scale2, step_size,
                bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale):
    """:func:`numrnn.optim.rules.adam_rule` on every element of the flat arrays, in place."""
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        new_param, new_exp_avg, new_exp_avg_sq = adam_update(
            param[i], grad[i], exp_avg[i], exp_avg_sq[i], beta1, grad_scale1, beta2, grad_scale2, step_size,
            bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale)
        param[i] = new_param
        exp_avg[i] = new_exp_avg
        exp_avg_sq[i] = new_exp_avg_sq


@cuda.jit
def clamp_kernel(a, clip_value):
    """``a[i] = clamp_rule(a[i], clip_value)`` for a flat array, in place."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = clamp_value(a[i], clip_value)


@cuda.jit
def scale_kernel(a, factor):
    """``a[i] *= factor`` for a flat array."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = a[i] * factor


@cuda.jit
def norm_partials(a, power, use_max, partial):
    """One float64 per block into ``partial[blockIdx.x]``: over the block's grid-stride share
    of the flat array ``a`` (each value taken to float64 first), ``max |a|`` (``use_max``), ``sum a*a`` (``power == 2``),
    ``sum |a|`` (``power == 1``) or ``sum |a|**power``.  NaN propagates.

    Run once over the data, then with one block over the partials (``power = 1``, or
    ``use_max``; the partials are >= 0) to get the result in ``partial[0]`` of the second call.
    At most :data:`~numrnn.backends.cuda.config.MAX_THREADS` threads per block.
    """
    shared = cuda.shared.array(MAX_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        x = numba.float64(a[i])  # square in float64: a float32 gradient of 3e19 squares to inf
        if use_max:
            acc = _max_keep_nan(acc, abs(x))
        elif power == 2:
            acc += x * x
        elif power == 1:
            acc += abs(x)
        else:
            acc += abs(x) ** power
    shared[tid] = acc
    cuda.syncthreads()
    stride = 1
    while stride < cuda.blockDim.x:  # tree over the block (any block size)
        if tid % (2 * stride) == 0 and tid + stride < cuda.blockDim.x:
            if use_max:
                shared[tid] = _max_keep_nan(shared[tid], shared[tid + stride])
            else:
                shared[tid] += shared[tid + stride]
        cuda.syncthreads()
        stride *= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = shared[0]


# ------------------------------------------------------------------ validation and state


def _flat(array):
    """A 1-D view of a C-contiguous device array."""
    array = kernels.as_device(array)
    return array.reshape(int(array.size))


def check_pair(key, param, grad):
    """Validate the device parameter and gradient of ``key`` on the device; mutate nothing.

    Parameters
    ----------
    key : str
        Parameter name, for the messages.
    param, grad : device array
        Parameter (float, C-contiguous; updated in place later) and gradient (float, same
        shape, C-contiguous, finite).

    Returns
    -------
    device array, shape (param.size,)
        The gradient, flat, of the parameter's dtype (a device copy if it had another).

    Raises
    ------
    TypeError
        For a non-float parameter or gradient.
    ValueError
        For another shape, a non-contiguous array, or NaN/inf in the gradient.
    """
    param, grad = kernels.as_device(param), kernels.as_device(grad)
    if np.dtype(param.dtype).kind != "f":
        raise TypeError(f"params[{key!r}] must be a float device array, got dtype {np.dtype(param.dtype)}")
    if not kernels.is_c_contiguous(param):
        raise ValueError(f"params[{key!r}] must be a C-contiguous device array (it is updated in place)")
    if np.dtype(grad.dtype).kind != "f":
        raise TypeError(f"grads[{key!r}] must be a float device array, got dtype {np.dtype(grad.dtype)}")
    if tuple(grad.shape) != tuple(param.shape):
        raise ValueError(f"grads[{key!r}] must have shape {tuple(param.shape)} like params, got {tuple(grad.shape)}")
    if not kernels.is_c_contiguous(grad):
        raise ValueError(f"grads[{key!r}] must be a C-contiguous device array")
    flat = _flat(grad)
    if kernels.nonfinite_count(flat):
        raise ValueError(f"grads[{key!r}] contains NaN or inf")
    if np.dtype(grad.dtype) != np.dtype(param.dtype):
        flat = kernels.copy(flat, param.dtype)
    return flat


def check_clippable(array):
    """Raise unless ``array`` is a float, C-contiguous device array (clipped in place)."""
    array = kernels.as_device(array)
    if np.dtype(array.dtype).kind != "f":
        raise TypeError(f"every gradient must be a float array, got a device array of dtype {np.dtype(array.dtype)}")
    if not kernels.is_c_contiguous(array):
        raise ValueError("every device gradient must be C-contiguous (clipping works in place)")


def state_to_device(slots, dtype):
    """Move every host array of the slot dict ``slots`` to the device as ``dtype`` (in the dict).

    Device slots of another dtype are cast on the device.  Called once per key after
    :meth:`numrnn.optim.Optimizer.load_state_dict`; a no-op when the state is already there.
    """
    dtype = np.dtype(dtype)
    for slot, value in slots.items():
        if not kernels.is_device_array(value):
            slots[slot] = cuda.to_device(np.ascontiguousarray(value, dtype=dtype))
        else:
            slots[slot] = kernels.contiguous(value, dtype)  # the same array when it already fits


# ------------------------------------------------------------------ updates


def sgd_step(param, grad, momentum_buffer, *, lr, weight_decay, momentum, grad_scale, nesterov, first_step):
    """One :func:`numrnn.optim.rules.sgd_rule` update of a device parameter, in place.

    Parameters
    ----------
    param : device array
        C-contiguous parameter, updated in place.
    grad : device array, shape (param.size,)
        Flat gradient of the parameter's dtype.
    momentum_buffer : device array or None
        Buffer of the parameter's shape (written; read unless ``first_step``), None without
        momentum.
    lr, weight_decay, momentum, grad_scale, nesterov, first_step
        As in :func:`numrnn.optim.rules.sgd_rule` (host floats; cast to the parameter's dtype here).
    """
    flat = _flat(param)
    if flat.size == 0:
        return
    real = np.dtype(flat.dtype).type
    buffer = _flat(momentum_buffer) if momentum_buffer is not None else kernels._placeholder(flat.dtype)
    grid, threads = kernels._blocks(flat.size)
    sgd_kernel[grid, threads](flat, grad, buffer, real(lr), real(weight_decay), real(momentum), real(grad_scale),
                              bool(nesterov), bool(first_step))


def adam_step(param, grad, exp_avg, exp_avg_sq, *, beta1, grad_scale1, beta2, grad_scale2, step_size,
              bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale):
    """One :func:`numrnn.optim.rules.adam_rule` update of a device parameter and its moments, in place.

    Parameters
    ----------
    param, exp_avg, exp_avg_sq : device array
        C-contiguous arrays of one shape and dtype, updated in place.
    grad : device array, shape (param.size,)
        Flat gradient of the parameter's dtype.
    beta1, grad_scale1, beta2, grad_scale2, step_size, bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale
        As in :func:`numrnn.optim.rules.adam_rule` (host floats; cast to the parameter's dtype here).
    """
    flat = _flat(param)
    if flat.size == 0:
        return
    real = np.dtype(flat.dtype).type
    grid, threads = kernels._blocks(flat.size)
    adam_kernel[grid, threads](flat, grad, _flat(exp_avg), _flat(exp_avg_sq), real(beta1), real(grad_scale1),
                               real(beta2), real(grad_scale2), real(step_size), real(bias_correction2_sqrt),
                               real(eps), real(weight_decay), bool(decoupled), real(decay_scale))


# ------------------------------------------------------------------ clipping


def norm_part(array, norm_type):
    """One array's share of a gradient norm, reduced on the device; one float comes back.

    Parameters
    ----------
    array : device array
        C-contiguous float array.
    norm_type : float
        ``inf``: ``max |a|``; ``2``: ``sum a**2``; otherwise ``sum |a|**norm_type``
        (accumulated in float64).  0.0 for an empty array; NaN if it holds NaN.
    """
    flat = _flat(array)
    if flat.size == 0:
        return 0.0
    use_max = math.isinf(norm_type)
    power = 1.0 if use_max else float(norm_type)
    grid, threads = kernels._blocks(flat.size)
    partial = cuda.device_array(grid, dtype=np.float64)
    norm_partials[grid, threads](flat, power, use_max, partial)
    result = cuda.device_array(1, dtype=np.float64)
    _, threads = kernels._blocks(grid)
    norm_partials[1, threads](partial, 1.0, use_max, result)
    return float(result.copy_to_host()[0])


def _apply_in_place(kernel, array, value):
    """Launch ``kernel(flat, value)`` over the flat view of a device array, ``value`` cast to its dtype."""
    flat = _flat(array)
    if flat.size:
        grid, threads = kernels._blocks(flat.size)
        kernel[grid, threads](flat, np.dtype(flat.dtype).type(value))


def scale(array, factor):
    """``array *= factor`` on the device (``factor`` cast to the array's dtype)."""
    _apply_in_place(scale_kernel, array, factor)


def clamp(array, clip_value):
    """Clamp a device array to ``[-clip_value, clip_value]`` in place (:func:`numrnn.optim.rules.clamp_rule`)."""
    _apply_in_place(clamp_kernel, array, clip_value)


# ------------------------------------------------------------------ PTX check


def kernel_signatures(dtype):
    """``(name, python function, argument types)`` of every kernel of this module as launched.

    The format of :func:`numrnn.backends.cuda.kernel_signatures`, for
    ``numba.cuda.compile_ptx`` (``tests/test_cuda_ptx.py``).
    """
    f = numba.from_dtype(np.dtype(dtype))
    flat = numba.types.Array(f, 1, "C")
    flat64 = numba.types.Array(numba.types.float64, 1, "C")
    boolean = numba.types.boolean
    signatures = [
        ("sgd_kernel", sgd_kernel, (flat, flat, flat, f, f, f, f, boolean, boolean)),
        ("adam_kernel", adam_kernel, (flat, flat, flat, flat, f, f, f, f, f, f, f, f, boolean, f)),
        ("clamp_kernel", clamp_kernel, (flat, f)),
        ("scale_kernel", scale_kernel, (flat, f)),
        ("norm_partials", norm_partials, (flat, numba.types.float64, boolean, flat64)),
        ("norm_partials_second_pass", norm_partials, (flat64, numba.types.float64, boolean, flat64)),
    ]
    return [(label, kernel.py_func, args) for label, kernel, args in signatures]
