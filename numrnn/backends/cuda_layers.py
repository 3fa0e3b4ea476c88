"""Whole-layer forward, backward and step on the GPU, with device arrays in and out.

:class:`numrnn.layers.RNNBase` hands its ``forward``, ``backward`` and ``step`` to
:class:`DeviceLayers` when its backend runs on a device, so that every
intermediate (layer outputs, dropout masks, what forward saves for backward, the
gradients reaching each layer) stays on the GPU:

* inputs may be NumPy arrays (validated by the layer's own checks, then copied
  to the device once) or objects exposing ``__cuda_array_interface__`` (Numba
  device arrays, CuPy arrays, PyTorch CUDA tensors), validated on the device
  without a host round trip: ndim, shape and dtype from the interface, NaN/inf
  with a counting kernel that returns one integer;
* outputs are NumPy arrays, or device arrays (Numba ``DeviceNDArray``, which
  expose ``__cuda_array_interface__``) when ``layer.device_output`` is True;
* parameters live in ``layer.params`` as NumPy arrays by default; each forward
  then copies them to the device (one copy per array), and backward copies each
  gradient back once to accumulate it into ``layer.grads``.  With
  ``layer.device_params = True`` both dicts hold device arrays instead: the
  weights are read where they are and the gradients accumulate on the device, so
  with the optimisers of :mod:`numrnn.optim` (which update device arrays on the
  device) nothing crosses to the host between training steps;
* dropout masks are drawn on the host from the layer's generator exactly as on
  the CPU, so the same seed gives the same masks, and copied to the device.

The semantics (layers, directions, dropout, ``lengths``, ``batch_first``,
unbatched input) are those of the CPU path in :mod:`numrnn.layers`; the tests in
``tests/cuda`` hold the two to each other.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn.backends import cuda as kernels


def _is_device(value):
    return value is not None and kernels.is_device_array(value)


def _device_input(value, name, dtype, ndims):
    """A validated device array for ``value`` (kind and ndim only; shape checked by the caller)."""
    array = kernels.as_device(value)
    kind = np.dtype(array.dtype).kind
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers, got complex dtype {array.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {wanted}, got {array.ndim}-D with shape {tuple(array.shape)}")
    return array


def _check_finite(array, name):
    """Raise ``ValueError`` if the contiguous device array holds NaN or inf."""
    if kernels.nonfinite_count(array):
        raise ValueError(f"{name} contains NaN or inf")


def _owned_copy(array, dtype, swap01=False):
    """A new C-contiguous device copy (cast to ``dtype``), checked for NaN/inf."""
    return kernels.copy(array, dtype, swap01=swap01)


class DeviceLayers:
    """Forward, backward and step of a whole :class:`~numrnn.layers.RNNBase` on the device."""

    def __init__(self, backend):
        self.backend = backend

    # ------------------------------------------------------------------ border

    def _input(self, layer, x):
        """(x time-major (T, B, I) device copy, batched)."""
        if not _is_device(x):
            host, batched = layer._check_input(x)
            return kernels.cuda.to_device(host), batched
        array = _device_input(x, "x", layer.dtype, (2, 3))
        batched = array.ndim == 3
        if not batched:
            array = array.reshape(array.shape[0], 1, array.shape[1]) if kernels.is_c_contiguous(array) \
                else _owned_copy(array, array.dtype).reshape(array.shape[0], 1, array.shape[1])
        features = array.shape[2]
        steps, batch = (array.shape[1], array.shape[0]) if batched and layer.batch_first else array.shape[:2]
        if features != layer.input_size:
            raise ValueError(f"x must have {layer.input_size} features (input_size) in its last axis, got {features}")
        if steps == 0:
            raise ValueError("x must hold at least one timestep, got a sequence of length 0")
        if batch == 0:
            raise ValueError("x must hold at least one sequence, got a batch of size 0")
        owned = _owned_copy(array, layer.dtype, swap01=batched and layer.batch_first)
        _check_finite(owned, "x")
        return owned, batched

    def _state(self, layer, state, batch, batched, name, rows):
        """Tuple of ``state_size`` device arrays (rows, B, H); zeros for None."""
        shape = (rows, batch, layer.hidden_size)
        parts = state if layer.state_size == 2 and isinstance(state, (tuple, list)) else (state,)
        if state is None or not any(_is_device(p) for p in parts):
            host = layer._check_state(state, batch, batched, name)  # step(): rows = L = L*D
            return tuple(kernels.cuda.to_device(np.ascontiguousarray(s.reshape(shape))) for s in host)
        if layer.state_size == 2 and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError(f"{name} of an LSTM must be a pair (h, c) of arrays or None, got {type(state).__name__}")
        labels = (f"{name}[0] (h)", f"{name}[1] (c)") if layer.state_size == 2 else (name,)
        out = []
        for part, label in zip(parts, labels):
            if part is None:
                out.append(kernels.zeros(shape, layer.dtype))
                continue
            if not _is_device(part):
                array = check.as_float_array(part, label, layer.dtype)
                check.check_shape(array, shape if batched else (rows, layer.hidden_size), label)
                out.append(kernels.cuda.to_device(np.ascontiguousarray(array.reshape(shape))))
                continue
            array = _device_input(part, label, layer.dtype, (3,) if batched else (2,))
            expected = shape if batched else (rows, layer.hidden_size)
            if tuple(array.shape) != expected:
                raise ValueError(f"{label} must have shape {expected}, got {tuple(array.shape)}")
            owned = _owned_copy(array, layer.dtype).reshape(shape)
            _check_finite(owned, label)
            out.append(owned)
        return tuple(out)

    @staticmethod
    def _lengths(lengths, batch, steps, batched):
        if _is_device(lengths):
            lengths = kernels.as_device(lengths).copy_to_host()
        lengths = check.check_lengths(lengths, batch, steps)
        if not batched and not np.all(lengths == steps):
            raise ValueError("lengths must be None for unbatched (2-D) input")
        return lengths

    @staticmethod
    def _weights(layer, layer_index, direction):
        """The layer-direction's weights on the device: as they are with
        ``layer.device_params``, else copied there (one copy per array)."""
        return tuple(w if _is_device(w) else kernels.cuda.to_device(w) for w in layer._weights(layer_index, direction))

    def _present(self, layer, y, state_n, batched):
        """Device arrays or NumPy arrays in the layer's conventions."""
        device = bool(getattr(layer, "device_output", False))
        if layer.batch_first and batched:
            y = kernels.copy(y, swap01=True)
        if not batched:
            y = y.reshape(y.shape[0], y.shape[2])
            state_n = tuple(s.reshape(s.shape[0], s.shape[2]) for s in state_n)
        if not device:
            y = y.copy_to_host()
            state_n = tuple(s.copy_to_host() for s in state_n)
        return y, layer._pack_state(state_n)

    # ------------------------------------------------------------------ forward

    def forward(self, layer, x, state=None, lengths=None):
        """:meth:`numrnn.layers.RNNBase.forward` on the device."""
        for check_name in ("device_output",):
            check.check_bool(getattr(layer, check_name, False), check_name)
        kernels.check_hidden_size(layer.cell, layer.hidden_size, layer.dtype)
        x, batched = self._input(layer, x)
        steps, batch = x.shape[:2]
        lengths = self._lengths(lengths, batch, steps, batched)
        rows = layer.num_layers * layer.num_directions
        state0 = self._state(layer, state, batch, batched, "state", rows)
        y, state_n, saved = self._run(layer, x, lengths, state0, dropout=layer.training)
        saved["batched"] = batched
        layer._saved = saved
        return self._present(layer, y, state_n, batched)

    def _run(self, layer, x, lengths, state0, dropout):
        steps, batch = x.shape[:2]
        hidden, directions, dtype = layer.hidden_size, layer.num_directions, layer.dtype
        use_dropout = dropout and layer.dropout > 0 and layer.num_layers > 1
        keep = 1.0 - layer.dropout
        lengths_dev = kernels.cuda.to_device(lengths)
        state_n = tuple(kernels.empty(s.shape, dtype) for s in state0)
        layer_input = x
        saved_layers, masks = [], []
        for index_layer in range(layer.num_layers):
            y = kernels.empty((steps, batch, directions * hidden), dtype)
            saved_dirs = []
            for direction in range(directions):
                index = index_layer * directions + direction
                out = y if directions == 1 else y[:, :, direction * hidden : (direction + 1) * hidden]
                final, saved = self.backend.layer_forward(
                    layer.cell, layer_input, lengths_dev, direction == 1,
                    self._weights(layer, index_layer, direction), tuple(s[index] for s in state0), out)
                for k, value in enumerate(final):
                    state_n[k][index].copy_to_device(value)
                saved_dirs.append(saved)
            saved_layers.append(saved_dirs)
            if use_dropout and index_layer < layer.num_layers - 1:
                mask_host = (layer._dropout_rng.random(y.shape) < keep).astype(dtype) / dtype.type(keep)
                mask = kernels.cuda.to_device(mask_host)
                masks.append(mask)
                dropped = kernels.empty(y.shape, dtype)
                grid, threads = kernels._blocks(y.size)
                kernels.multiply_3d[grid, threads](y, mask, dropped)
                layer_input = dropped
            else:
                masks.append(None)
                layer_input = y
        saved = {"saved_layers": saved_layers, "masks": masks, "shape": (steps, batch), "lengths": lengths,
                 "device": True}
        return layer_input, state_n, saved

    # ------------------------------------------------------------------ backward

    def _output_gradient(self, layer, dy, steps, batch, batched):
        out_features = layer.num_directions * layer.hidden_size
        if not _is_device(dy):
            array = check.as_float_array(dy, "dy", layer.dtype)
            if not batched:
                check.check_shape(array, (steps, out_features), "dy")
                array = array[:, None, :]
            elif layer.batch_first:
                check.check_shape(array, (batch, steps, out_features), "dy")
                array = array.transpose(1, 0, 2)
            else:
                check.check_shape(array, (steps, batch, out_features), "dy")
            return kernels.cuda.to_device(np.ascontiguousarray(array))
        array = _device_input(dy, "dy", layer.dtype, (2,) if not batched else (3,))
        if not batched:
            expected = (steps, out_features)
        elif layer.batch_first:
            expected = (batch, steps, out_features)
        else:
            expected = (steps, batch, out_features)
        if tuple(array.shape) != expected:
            shown = expected
            raise ValueError(f"dy must have shape {shown}, got {tuple(array.shape)}")
        if not batched:
            owned = _owned_copy(array, layer.dtype).reshape(steps, 1, out_features)
        else:
            owned = _owned_copy(array, layer.dtype, swap01=layer.batch_first)
        _check_finite(owned, "dy")
        return owned

    def backward(self, layer, dy, dstate=None):
        """:meth:`numrnn.layers.RNNBase.backward` on the device (which has checked that
        a forward's saved state is there)."""
        saved = layer._saved
        steps, batch = saved["shape"]
        batched = saved["batched"]
        d_out = self._output_gradient(layer, dy, steps, batch, batched)
        rows = layer.num_layers * layer.num_directions
        dstate_n = self._state(layer, dstate, batch, batched, "dstate", rows)
        directions, hidden, dtype = layer.num_directions, layer.hidden_size, layer.dtype
        new_grads = {}
        dstate0 = tuple(kernels.empty(s.shape, dtype) for s in dstate_n)
        dx = None
        for index_layer in reversed(range(layer.num_layers)):
            dx = None
            for direction in range(directions):
                index = index_layer * directions + direction
                d_y = d_out if directions == 1 else d_out[:, :, direction * hidden : (direction + 1) * hidden]
                dx_dir, d_state, grads = self.backend.layer_backward(
                    saved["saved_layers"][index_layer][direction], d_y, tuple(s[index] for s in dstate_n))
                for k, value in enumerate(d_state):
                    dstate0[k][index].copy_to_device(value)
                if dx is None:
                    dx = dx_dir
                else:
                    total = kernels.empty(dx.shape, dtype)
                    grid, threads = kernels._blocks(dx.size)
                    kernels.add_3d[grid, threads](dx, dx_dir, total)
                    dx = total
                for name, grad in zip(layer._param_names(index_layer, direction), grads):
                    new_grads[name] = grad
            if index_layer > 0:
                mask = saved["masks"][index_layer - 1]
                if mask is not None:
                    masked = kernels.empty(dx.shape, dtype)
                    grid, threads = kernels._blocks(dx.size)
                    kernels.multiply_3d[grid, threads](dx, mask, masked)
                    d_out = masked
                else:
                    d_out = dx
        host_grads = {}  # copied first, added after, so a failed copy leaves the NumPy gradients as they were
        for name, grad in new_grads.items():
            if _is_device(layer.grads[name]):
                kernels.accumulate(layer.grads[name], grad)
            else:
                host_grads[name] = grad.copy_to_host()
        for name, grad in host_grads.items():
            layer.grads[name] += grad
        layer._saved = None  # one backward per forward, as on the CPU
        return self._present_gradients(layer, dx, dstate0, batched)

    def _present_gradients(self, layer, dx, dstate0, batched):
        device = bool(getattr(layer, "device_output", False))
        if batched and layer.batch_first:
            dx = kernels.copy(dx, swap01=True)
        if not batched:
            dx = dx.reshape(dx.shape[0], dx.shape[2])
            dstate0 = tuple(s.reshape(s.shape[0], s.shape[2]) for s in dstate0)
        if not device:
            dx = dx.copy_to_host()
            dstate0 = tuple(s.copy_to_host() for s in dstate0)
        return dx, layer._pack_state(dstate0)

    # ------------------------------------------------------------------ step

    def step(self, layer, x_t, state=None):
        """:meth:`numrnn.layers.RNNBase.step` on the device."""
        if layer.bidirectional:
            raise ValueError("step() needs a unidirectional layer: a bidirectional layer must see the whole sequence")
        if _is_device(x_t):
            array = _device_input(x_t, "x_t", layer.dtype, (1, 2))
            batched = array.ndim == 2
            if tuple(array.shape)[-1] != layer.input_size:
                raise ValueError(
                    f"x_t must have {layer.input_size} features (input_size) in its last axis, got {tuple(array.shape)[-1]}")
            if batched and array.shape[0] == 0:
                raise ValueError("x_t must hold at least one sequence, got a batch of size 0")
            x = _owned_copy(array, layer.dtype).reshape(1, array.shape[0] if batched else 1, layer.input_size)
            _check_finite(x, "x_t")
        else:
            host, batched = layer._check_step_input(x_t)
            x = kernels.cuda.to_device(host[None])
        batch = x.shape[1]
        state0 = self._state(layer, state, batch, batched, "state", layer.num_layers)
        state_n = tuple(kernels.empty(s.shape, layer.dtype) for s in state0)
        layer_input = x
        ones = kernels._ones(batch)
        for index in range(layer.num_layers):
            out = kernels.empty((1, batch, layer.hidden_size), layer.dtype)
            final, _ = self.backend.layer_forward(layer.cell, layer_input, ones, False,
                                                  self._weights(layer, index, 0), tuple(s[index] for s in state0), out)
            for k, value in enumerate(final):
                state_n[k][index].copy_to_device(value)
            layer_input = out
        h_t = layer_input.reshape(batch, layer.hidden_size)
        if not batched:
            h_t = h_t.reshape(layer.hidden_size)
            state_n = tuple(s.reshape(s.shape[0], s.shape[2]) for s in state_n)
        if not getattr(layer, "device_output", False):
            h_t = h_t.copy_to_host()
            state_n = tuple(s.copy_to_host() for s in state_n)
        return h_t, layer._pack_state(state_n)
