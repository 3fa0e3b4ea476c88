"""The array operations of the :class:`~numrnn.backends.protocol.Backend` protocol on NumPy.

:class:`HostArrays` is the mixin :class:`numrnn.backends.cpu.CPUBackend` takes them
from: backend arrays are NumPy arrays, the border converts everything on the host, and
nothing is ever "native" (the driver validates every input with NumPy).
"""

from __future__ import annotations

import contextlib

import numpy as np


class HostArrays:
    """NumPy implementations of the driver's array operations (see :class:`~numrnn.backends.protocol.Backend`)."""

    device = False
    uses_workspace = False

    def step_kernel(self, dtype, layers=None):
        """No compiled step fast path unless the backend defines one."""
        return None

    def compute_context(self):
        """No context unless the backend defines one."""
        return contextlib.nullcontext()

    def check_layer(self, cell, hidden_size, dtype):
        """Every size runs on the host."""

    def is_native(self, value):
        """Never: host inputs are all validated and converted by NumPy."""
        return False

    def native_input(self, value, name, ndims):
        """``value`` as a NumPy array of a real dtype with ``ndim in ndims``."""
        array = np.asarray(value)
        if array.dtype.kind == "c":
            raise TypeError(f"{name} must hold real numbers, got complex dtype {array.dtype}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
        if array.ndim not in ndims:
            wanted = " or ".join(f"{n}-D" for n in ndims)
            raise ValueError(f"{name} must be {wanted}, got {array.ndim}-D with shape {array.shape}")
        return array

    def to_backend(self, array):
        return array

    def to_host(self, array):
        return array

    def contiguous(self, array, dtype):
        return np.ascontiguousarray(array, dtype=dtype)

    def owned_copy(self, array, dtype, swap01=False):
        array = np.asarray(array)
        if swap01:
            array = array.swapaxes(0, 1)
        return np.array(array, dtype=dtype, order="C", copy=True)

    def nonfinite_count(self, array):
        return int(array.size - np.count_nonzero(np.isfinite(array)))

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def direction_outputs(self, steps, batch, hidden, directions, dtype, padded=True):
        """(T, B, H) buffers, one per direction, zeroed where ``padded`` (the kernels write
        every valid position: without padding that is all of them, and a zero fill of a
        (50, 128, 512) float32 output is 13 MB of stores); :meth:`concat_features` joins two."""
        allocate = np.zeros if padded else np.empty
        outs = [allocate((steps, batch, hidden), dtype=dtype) for _ in range(directions)]
        return (outs[0] if directions == 1 else None), outs

    def concat_features(self, parts):
        return np.concatenate(parts, axis=2)

    def feature_slice(self, array, start, stop):
        return np.ascontiguousarray(array[:, :, start:stop])

    def multiply(self, a, b):
        return a * b

    def add(self, a, b):
        return a + b

    def set_row(self, target, index, value):
        target[index] = value

    def swap01(self, array):
        return array.transpose(1, 0, 2)

    def present(self, array, device_output):
        return array

    def accumulate_gradients(self, grads, new_grads):
        for name, grad in new_grads.items():
            grads[name] += grad

    def fill_zero(self, array):
        array.fill(0)


__all__ = ["HostArrays"]
