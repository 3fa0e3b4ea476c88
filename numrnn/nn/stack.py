"""The one driver of a recurrent stack: layers x directions x dropout x state packing.

:func:`forward`, :func:`backward` and :func:`step` run a :class:`numrnn.nn.recurrent.RNNBase`
layer on its backend through the :class:`numrnn.backends.protocol.Backend` protocol only:
the per-layer kernels (``layer_forward``, ``layer_backward``, ``layer_step``, the
optional compiled step fast path) and a few array operations between them.  On the CPU
every array is NumPy; on the GPU every intermediate (layer outputs, dropout masks, what
forward saves, the gradients reaching each layer) stays on the device, and inputs that
are device arrays are validated there (:meth:`~numrnn.backends.protocol.Backend.is_native`).

Conventions (``T`` time, ``B`` batch, ``I`` input size, ``H`` hidden size, ``L`` layers,
``D`` directions): inside, everything is time-major (T, B, F) and states are tuples of
``state_size`` arrays (L*D, B, H); ``batch_first``, unbatched input and the LSTM's
``(h, c)`` pair exist only at the border (:func:`check_input`, :func:`present`).
Dropout masks are drawn on the host from the layer's generator, so a seed gives the
same masks on every backend.  Every check runs before anything is computed or stored.
"""

from __future__ import annotations

import operator

import numpy as np

from numrnn import _validation as check
from numrnn.nn.module import is_grad_enabled

__all__ = ["forward", "backward", "step", "plan_step", "check_input", "check_state", "check_step_input"]


# ------------------------------------------------------------------ host border checks


def check_input(layer, x):
    """``(x time-major C-contiguous (T, B, I) NumPy array, batched)``: owned by the call
    (a copy where it would share the caller's memory, since backward reads it), except
    under :class:`numrnn.nn.no_grad`, where no backward follows and nothing is copied."""
    original = x
    x = check.as_float_array(x, "x", layer.dtype)
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be 3-D (T, B, I) or 2-D unbatched (T, I), got {x.ndim}-D with shape {x.shape}")
    batched = x.ndim == 3
    if not batched:
        x = x[:, None, :]
    elif layer.batch_first:
        x = x.transpose(1, 0, 2)
    _check_sizes(layer, x.shape[2], x.shape[0], x.shape[1])
    x = np.ascontiguousarray(x)
    if is_grad_enabled() and np.shares_memory(x, original):
        x = x.copy()  # backward uses x: the caller may change their array in between
    return x, batched


def _check_sizes(layer, features, steps, batch):
    if features != layer.input_size:
        raise ValueError(f"x must have {layer.input_size} features (input_size) in its last axis, got {features}")
    if steps == 0:
        raise ValueError("x must hold at least one timestep, got a sequence of length 0")
    if batch == 0:
        raise ValueError("x must hold at least one sequence, got a batch of size 0")


def check_state(layer, state, batch, batched, name):
    """A tuple of ``state_size`` NumPy arrays (L*D, B, H); zeros for None (or a None element)."""
    shape = (layer.num_layers * layer.num_directions, batch, layer.hidden_size)
    if state is None:
        return tuple(np.zeros(shape, dtype=layer.dtype) for _ in range(layer.state_size))
    if layer.state_size == 2:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} of an LSTM must be a pair (h, c) of arrays or None, got {type(state).__name__}")
        parts = state
        labels = (f"{name}[0] (h)", f"{name}[1] (c)")
    else:
        if isinstance(state, tuple) and len(state) == 2 and all(isinstance(p, np.ndarray) or p is None for p in state):
            raise TypeError(f"{name} of {type(layer).__name__} must be a single array h, got a pair")
        parts = (state,)
        labels = (name,)
    out = []
    for part, label in zip(parts, labels):
        if part is None:
            out.append(np.zeros(shape, dtype=layer.dtype))
            continue
        array = check.as_float_array(part, label, layer.dtype)
        expected = shape if batched else (shape[0], shape[2])
        check.check_shape(array, expected, label)
        out.append(np.ascontiguousarray(array if batched else array[:, None, :]))
    return tuple(out)


def check_step_input(layer, x_t):
    """Full validation of ``x_t`` for ``step()``: ``((B, I) NumPy array, batched)``."""
    x = check.as_float_array(x_t, "x_t", layer.dtype)
    if x.ndim not in (1, 2):
        raise ValueError(f"x_t must be 2-D (B, I) or 1-D unbatched (I,), got {x.ndim}-D with shape {x.shape}")
    batched = x.ndim == 2
    x = x if batched else x[None]
    if x.shape[1] != layer.input_size:
        raise ValueError(f"x_t must have {layer.input_size} features (input_size) in its last axis, got {x.shape[1]}")
    if x.shape[0] == 0:
        raise ValueError("x_t must hold at least one sequence, got a batch of size 0")
    return np.ascontiguousarray(x), batched


# ------------------------------------------------------------------ border on the backend


def _check_finite(backend, array, name):
    if backend.nonfinite_count(array):
        raise ValueError(f"{name} contains NaN or inf")


def _input(layer, backend, x):
    """``(x time-major (T, B, I) backend array owned by the call, batched)``."""
    if not backend.is_native(x):
        host, batched = check_input(layer, x)
        return backend.to_backend(host), batched
    array = backend.native_input(x, "x", (2, 3))
    batched = array.ndim == 3
    shape = tuple(array.shape)  # a plain tuple (the CUDA simulator's shape has no negative indices)
    if batched:
        steps, batch = (shape[1], shape[0]) if layer.batch_first else shape[:2]
    else:
        steps, batch = shape[0], 1
    features = shape[-1]
    _check_sizes(layer, features, steps, batch)
    owned = backend.owned_copy(array, layer.dtype, swap01=batched and layer.batch_first)
    if not batched:
        owned = owned.reshape(steps, 1, features)
    _check_finite(backend, owned, "x")
    return owned, batched


def _state(layer, backend, state, batch, batched, name, rows):
    """A tuple of ``state_size`` backend arrays (rows, B, H); zeros for None."""
    if not backend.device:  # rows is L*D (step() refuses bidirectional layers): as check_state makes them
        return check_state(layer, state, batch, batched, name)
    shape = (rows, batch, layer.hidden_size)
    parts = state if layer.state_size == 2 and isinstance(state, (tuple, list)) else (state,)
    if state is None or not any(backend.is_native(p) for p in parts):
        host = check_state(layer, state, batch, batched, name)  # step(): rows = L = L*D
        return tuple(backend.to_backend(s.reshape(shape)) for s in host)
    if layer.state_size == 2 and (not isinstance(state, (tuple, list)) or len(state) != 2):
        raise TypeError(f"{name} of an LSTM must be a pair (h, c) of arrays or None, got {type(state).__name__}")
    labels = (f"{name}[0] (h)", f"{name}[1] (c)") if layer.state_size == 2 else (name,)
    expected = shape if batched else (rows, layer.hidden_size)
    out = []
    for part, label in zip(parts, labels):
        if part is None:
            out.append(backend.zeros(shape, layer.dtype))
        elif not backend.is_native(part):
            array = check.as_float_array(part, label, layer.dtype)
            check.check_shape(array, expected, label)
            out.append(backend.to_backend(np.ascontiguousarray(array.reshape(shape))))
        else:
            array = backend.native_input(part, label, (len(expected),))
            if tuple(array.shape) != expected:
                raise ValueError(f"{label} must have shape {expected}, got {tuple(array.shape)}")
            owned = backend.owned_copy(array, layer.dtype).reshape(shape)
            _check_finite(backend, owned, label)
            out.append(owned)
    return tuple(out)


def _lengths(backend, lengths, batch, steps, batched):
    if backend.is_native(lengths):
        lengths = backend.to_host(lengths)
    lengths = check.check_lengths(lengths, batch, steps)
    if not batched and not np.all(lengths == steps):
        raise ValueError("lengths must be None for unbatched (2-D) input")
    return lengths


def _output_gradient(layer, backend, dy, steps, batch, batched):
    """``dy`` as a time-major (T, B, D*H) backend array."""
    out_features = layer.num_directions * layer.hidden_size
    if not batched:
        expected = (steps, out_features)
    elif layer.batch_first:
        expected = (batch, steps, out_features)
    else:
        expected = (steps, batch, out_features)
    if not backend.is_native(dy):
        array = check.as_float_array(dy, "dy", layer.dtype)
        check.check_shape(array, expected, "dy")
        if not batched:
            array = array[:, None, :]
        elif layer.batch_first:
            array = array.transpose(1, 0, 2)
        return backend.to_backend(np.ascontiguousarray(array))
    array = backend.native_input(dy, "dy", (len(expected),))
    if tuple(array.shape) != expected:
        raise ValueError(f"dy must have shape {expected}, got {tuple(array.shape)}")
    owned = backend.owned_copy(array, layer.dtype, swap01=batched and layer.batch_first)
    if not batched:
        owned = owned.reshape(steps, 1, out_features)
    _check_finite(backend, owned, "dy")
    return owned


def present(layer, backend, y, state, batched):
    """``(y, state)`` in the layer's conventions: batch_first, unbatched, the LSTM pair,
    NumPy unless ``device_output`` on a device backend."""
    device_output = backend.device and layer.device_output
    if batched and layer.batch_first:
        y = backend.swap01(y)
    if not batched:
        y = y.reshape(y.shape[0], y.shape[2])
        state = tuple(s.reshape(s.shape[0], s.shape[2]) for s in state)
    if not backend.device:
        return y, layer._pack_state(state)
    return backend.present(y, device_output), layer._pack_state(tuple(backend.present(s, device_output) for s in state))


def _weights(layer, backend, index_layer, direction):
    """The layer-direction's four weight arrays as backend arrays (copied there only if needed)."""
    weights = layer._weights(index_layer, direction)
    if not backend.device:  # host arrays are the backend's already
        return weights
    return tuple(backend.to_backend(w) for w in weights)


# ------------------------------------------------------------------ forward


def forward(layer, x, state=None, lengths=None):
    """Validate, run every layer and direction, save what :func:`backward` needs in
    ``layer._saved`` (outside :class:`numrnn.nn.no_grad`); returns ``(y, state_n)`` as ``layer.forward`` documents."""
    backend = layer._backend
    if backend.device:
        check.check_bool(layer.device_output, "device_output")
        backend.check_layer(layer.cell, layer.hidden_size, layer.dtype)
    x, batched = _input(layer, backend, x)
    steps, batch = x.shape[:2]
    lengths = _lengths(backend, lengths, batch, steps, batched)
    state0 = _state(layer, backend, state, batch, batched, "state", layer.num_layers * layer.num_directions)
    with backend.compute_context():
        y, state_n, saved = _run(layer, backend, x, lengths, state0, dropout=layer.training)
    saved["batched"] = batched
    layer._save_for_backward(saved)  # nothing under numrnn.nn.no_grad()
    return present(layer, backend, y, state_n, batched)


def _run(layer, backend, x, lengths, state0, dropout):
    """Time-major forward through all layers: ``(y, state_n tuple, saved)``."""
    steps, batch = x.shape[:2]
    hidden, directions, dtype = layer.hidden_size, layer.num_directions, layer.dtype
    use_dropout = dropout and layer.dropout > 0 and layer.num_layers > 1
    keep = 1.0 - layer.dropout
    lengths_b = backend.to_backend(lengths)
    state_n = tuple(backend.empty(s.shape, dtype) for s in state0)
    workspaces = layer._workspaces if backend.uses_workspace else None
    padded = bool(lengths.min() < steps)
    layer_input = x
    saved_layers, masks = [], []
    for index_layer in range(layer.num_layers):
        y, outs = backend.direction_outputs(steps, batch, hidden, directions, dtype, padded)
        saved_dirs = []
        for direction in range(directions):
            index = index_layer * directions + direction
            extra = {} if workspaces is None else {"workspace": workspaces.setdefault(index, {})}
            final, saved = backend.layer_forward(
                layer.cell, layer_input, lengths_b, direction == 1, _weights(layer, backend, index_layer, direction),
                tuple(s[index] for s in state0), outs[direction], **extra)
            for k, value in enumerate(final):
                backend.set_row(state_n[k], index, value)
            saved_dirs.append(saved)
        saved_layers.append(saved_dirs)
        if y is None:
            y = backend.concat_features(outs)
        if use_dropout and index_layer < layer.num_layers - 1:
            mask = (layer._dropout_rng.random(y.shape) < keep).astype(dtype) / dtype.type(keep)
            mask = backend.to_backend(mask)
            masks.append(mask)
            layer_input = backend.multiply(y, mask)
        else:
            masks.append(None)
            layer_input = y
    saved = {"saved_layers": saved_layers, "masks": masks, "shape": (steps, batch), "lengths": lengths}
    return layer_input, state_n, saved


# ------------------------------------------------------------------ backward


def backward(layer, dy, dstate=None):
    """Backward through what the last :func:`forward` saved (``layer._saved``, checked by
    the caller to be there); accumulates ``layer.grads``, returns ``(dx, dstate0)``."""
    backend = layer._backend
    saved = layer._saved
    steps, batch = saved["shape"]
    batched = saved["batched"]
    d_out = _output_gradient(layer, backend, dy, steps, batch, batched)
    dstate_n = _state(layer, backend, dstate, batch, batched, "dstate", layer.num_layers * layer.num_directions)
    layer._saved = None  # the backend may consume what forward saved: one backward per forward
    try:
        with backend.compute_context():
            dx, dstate0, new_grads = _backward_layers(layer, backend, saved, d_out, dstate_n)
        backend.accumulate_gradients(layer.grads, new_grads)
    except BaseException:  # pragma: no cover - kernels do not raise on validated input
        layer._saved = saved
        raise
    return present(layer, backend, dx, dstate0, batched)


def _backward_layers(layer, backend, saved, d_out, dstate_n):
    """Time-major backward through all layers: ``(dx, dstate0 tuple, {name: grad})``."""
    directions, hidden = layer.num_directions, layer.hidden_size
    new_grads = {}
    dstate0 = tuple(backend.empty(s.shape, layer.dtype) for s in dstate_n)
    for index_layer in reversed(range(layer.num_layers)):
        dx = None
        for direction in range(directions):
            index = index_layer * directions + direction
            d_y = d_out if directions == 1 else backend.feature_slice(d_out, direction * hidden, (direction + 1) * hidden)
            dx_dir, d_state, grads = backend.layer_backward(
                saved["saved_layers"][index_layer][direction], d_y, tuple(s[index] for s in dstate_n))
            for k, value in enumerate(d_state):
                backend.set_row(dstate0[k], index, value)
            dx = dx_dir if dx is None else backend.add(dx, dx_dir)
            for name, grad in zip(layer._param_names(index_layer, direction), grads):
                new_grads[name] = grad
        if index_layer > 0:
            mask = saved["masks"][index_layer - 1]
            d_out = dx if mask is None else backend.multiply(dx, mask)
    return dx, dstate0, new_grads


# ------------------------------------------------------------------ step


def step(layer, x_t, state=None):
    """The validated path of ``layer.step``: checks every argument, then runs the compiled
    fast path's kernel where the backend has one (so only one kernel per layout is
    compiled), else every layer's ``layer_step``."""
    backend = layer._backend
    if layer.bidirectional:
        raise ValueError("step() needs a unidirectional layer: a bidirectional layer must see the whole sequence")
    if backend.is_native(x_t):
        array = backend.native_input(x_t, "x_t", (1, 2))
        batched = array.ndim == 2
        shape = tuple(array.shape)
        if shape[-1] != layer.input_size:
            raise ValueError(f"x_t must have {layer.input_size} features (input_size) in its last axis, got {shape[-1]}")
        if batched and shape[0] == 0:
            raise ValueError("x_t must hold at least one sequence, got a batch of size 0")
        x = backend.owned_copy(array, layer.dtype).reshape(shape[0] if batched else 1, layer.input_size)
        _check_finite(backend, x, "x_t")
    else:
        host, batched = layer._check_step_input(x_t)
        x = backend.to_backend(host)
    batch = x.shape[0]
    state0 = _state(layer, backend, state, batch, batched, "state", layer.num_layers)
    if layer._step_plan is None:
        layer._step_plan = plan_step(layer)
    plan = layer._step_plan
    if plan is not None:
        kernel, cell, weights, state_size, layers, hidden, dtype = plan
        h0 = np.ascontiguousarray(state0[0])
        c0 = np.ascontiguousarray(state0[1]) if state_size == 2 else h0
        stacked = np.empty((state_size, layers, batch, hidden), dtype)
        params = layer.params
        if type(weights) is tuple:
            kernel(cell, x, *(params[name] for name in weights), h0, c0, stacked)
        else:
            kernel(cell, x, *weights(params), h0, c0, stacked)
        new_state = tuple(stacked)
        h_t = stacked[0][layers - 1]
    else:
        h_t = x
        new_state = tuple(backend.empty(s.shape, layer.dtype) for s in state0)
        for index in range(layer.num_layers):
            final = backend.layer_step(layer.cell, h_t, _weights(layer, backend, index, 0), tuple(s[index] for s in state0))
            for k, value in enumerate(final):
                backend.set_row(new_state[k], index, value)
            h_t = final[0]
    device_output = backend.device and layer.device_output
    if not batched:
        h_t = h_t.reshape(layer.hidden_size)
        new_state = tuple(s.reshape(s.shape[0], s.shape[2]) for s in new_state)
    return backend.present(h_t, device_output), layer._pack_state(tuple(backend.present(s, device_output) for s in new_state))


def _tuple_getter(keys):
    """``mapping -> tuple(mapping[k] for k in keys)``, also for one key."""
    if len(keys) == 1:
        key = keys[0]
        return lambda mapping: (mapping[key],)
    return operator.itemgetter(*keys)


def plan_step(layer):
    """The fast path of ``layer.step`` where it applies (a backend with a step kernel; the
    caller has refused bidirectional layers), else None: ``(kernel, cell code, weights,
    state size, L, H, dtype)``, where ``weights`` is the four parameter names of a single
    layer with biases (looked up one by one: a star-call costs more), else a function of
    ``params`` to the kernel's three weight tuples.  Both read ``params`` on every call,
    so replaced arrays are seen.  The kernel takes only arrays of ``dtype``: an ``x_t`` of
    another dtype makes it raise TypeError, and the validated path converts it."""
    backend = layer._backend
    layers = layer.num_layers
    single = layers == 1 and layer.bias
    from numrnn.backends.cpu import STEP_CELLS

    if layer.cell not in STEP_CELLS:  # a registered family the step kernels don't know
        return None
    kernel = backend.step_kernel(layer.dtype) if single else backend.step_kernel(layer.dtype, layers)
    if kernel is None:
        return None

    names = [layer._param_names(index, 0) for index in range(layers)]
    if single:
        weights = names[0]
    else:
        weights_ih = _tuple_getter([n[0] for n in names])
        weights_hh = _tuple_getter([n[1] for n in names])
        if layer.bias:
            biases = _tuple_getter([n[k] for n in names for k in (2, 3)])
        else:
            zeros = (np.zeros(layer.family.gate_rows(layer.hidden_size), dtype=layer.dtype),) * (2 * layers)
            biases = lambda params: zeros  # noqa: E731
        weights = lambda params: (weights_ih(params), weights_hh(params), biases(params))  # noqa: E731
    return kernel, STEP_CELLS[layer.cell], weights, layer.state_size, layers, layer.hidden_size, layer.dtype
