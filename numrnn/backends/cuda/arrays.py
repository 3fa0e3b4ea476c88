"""The array operations of the :class:`~numrnn.backends.protocol.Backend` protocol on the GPU.

:class:`DeviceArrays` is the mixin :class:`numrnn.backends.cuda.CUDABackend` takes them
from: backend arrays are Numba device arrays, so everything between layers (layer
outputs, dropout masks, what forward saves, the gradients reaching each layer) stays on
the device.  Inputs exposing ``__cuda_array_interface__`` (Numba device arrays, CuPy
arrays, PyTorch CUDA tensors) are "native": the border validates them on the device,
with ndim, shape and dtype read from the interface and NaN/inf counted by a kernel that
returns one integer.  The kernels themselves live in the package's ``__init__``;
they are imported when first used, so this module imports without numba-cuda.
"""

from __future__ import annotations

import contextlib

import numpy as np


def _kernels():
    from numrnn.backends import cuda

    return cuda


class DeviceArrays:
    """Device implementations of the driver's array operations (see :class:`~numrnn.backends.protocol.Backend`)."""

    device = True
    uses_workspace = False

    def step_kernel(self, dtype, layers=None):
        """No compiled step fast path on the GPU: ``step()`` runs the stack driver."""
        return None

    def compute_context(self):
        return contextlib.nullcontext()

    def check_layer(self, cell, hidden_size, dtype):
        """Raise ``ValueError`` if the layer's shared memory would not fit a block."""
        _kernels().check_hidden_size(cell, hidden_size, dtype)

    def is_native(self, value):
        return value is not None and _kernels().is_device_array(value)

    def native_input(self, value, name, ndims):
        """A device view of ``value``, checked for a real dtype and ``ndim in ndims``."""
        array = _kernels().as_device(value)
        kind = np.dtype(array.dtype).kind
        if kind == "c":
            raise TypeError(f"{name} must hold real numbers, got complex dtype {array.dtype}")
        if kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
        if array.ndim not in ndims:
            wanted = " or ".join(f"{n}-D" for n in ndims)
            raise ValueError(f"{name} must be {wanted}, got {array.ndim}-D with shape {tuple(array.shape)}")
        return array

    def to_backend(self, array):
        kernels = _kernels()
        if kernels.is_device_array(array):
            return kernels.as_device(array)
        return kernels.cuda.to_device(np.ascontiguousarray(array))

    def to_host(self, array):
        kernels = _kernels()
        return kernels.as_device(array).copy_to_host() if kernels.is_device_array(array) else array

    def contiguous(self, array, dtype):
        return _kernels().contiguous(array, dtype)

    def owned_copy(self, array, dtype, swap01=False):
        return _kernels().copy(array, dtype, swap01=swap01)

    def nonfinite_count(self, array):
        return _kernels().nonfinite_count(array)

    def empty(self, shape, dtype):
        return _kernels().empty(shape, dtype)

    def zeros(self, shape, dtype):
        return _kernels().zeros(shape, dtype)

    def direction_outputs(self, steps, batch, hidden, directions, dtype, padded=True):
        """One (T, B, D*H) array; each direction writes its strided slice of it, padding
        included (so ``padded`` changes nothing here)."""
        y = _kernels().empty((steps, batch, directions * hidden), dtype)
        if directions == 1:
            return y, [y]
        return y, [y[:, :, d * hidden : (d + 1) * hidden] for d in range(directions)]

    def concat_features(self, parts):
        kernels = _kernels()
        steps, batch = parts[0].shape[:2]
        out = kernels.empty((steps, batch, sum(p.shape[2] for p in parts)), parts[0].dtype)
        start = 0
        for part in parts:
            stop = start + part.shape[2]
            grid, threads = kernels._blocks(part.size)
            kernels.copy_3d[grid, threads](part, out[:, :, start:stop], False)
            start = stop
        return out

    def feature_slice(self, array, start, stop):
        return array[:, :, start:stop]

    def _elementwise(self, kernel, a, b):
        kernels = _kernels()
        out = kernels.empty(a.shape, a.dtype)
        grid, threads = kernels._blocks(a.size)
        kernel[grid, threads](a, b, out)
        return out

    def multiply(self, a, b):
        return self._elementwise(_kernels().multiply_3d, a, b)

    def add(self, a, b):
        return self._elementwise(_kernels().add_3d, a, b)

    def set_row(self, target, index, value):
        target[index].copy_to_device(value)

    def swap01(self, array):
        return _kernels().copy(array, swap01=True)

    def present(self, array, device_output):
        return array if device_output else array.copy_to_host()

    def accumulate_gradients(self, grads, new_grads):
        """Device gradients accumulate on the device; NumPy ones are all copied to the host
        first and added after, so a failed copy leaves them as they were."""
        kernels = _kernels()
        host_grads = {}
        for name, grad in new_grads.items():
            if kernels.is_device_array(grads[name]):
                kernels.accumulate(grads[name], grad)
            else:
                host_grads[name] = grad.copy_to_host()
        for name, grad in host_grads.items():
            grads[name] += grad

    def fill_zero(self, array):
        _kernels().fill_zero(array)


__all__ = ["DeviceArrays"]
