r"""Recurrent layers with PyTorch semantics: :class:`RNN`, :class:`LSTM`, :class:`GRU`.

Each layer holds its parameters in :attr:`~RNNBase.params`, a dict of NumPy arrays
with PyTorch's names, shapes and order (``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, with a ``_reverse`` suffix for the backward
direction), so ``{k: v.numpy() for k, v in torch_module.state_dict().items()}``
loads unchanged.  Gradients accumulate in :attr:`~RNNBase.grads` like PyTorch's
``.grad`` until :meth:`~RNNBase.zero_grad`.

Shapes (``T`` time, ``B`` batch, ``I`` input size, ``H`` hidden size, ``L`` layers,
``D`` = 2 if bidirectional else 1):

========== ==================================== ==========================
argument   shape                                notes
========== ==================================== ==========================
x          (T, B, I), or (B, T, I) batch_first  (T, I) unbatched
y          (T, B, D*H), or (B, T, D*H)          zero where ``t >= lengths[b]``
h0, h_n    (L*D, B, H)                          (L*D, H) unbatched
c0, c_n    (L*D, B, H)                          LSTM only
lengths    (B,) integers in [1, T]              as ``pack_padded_sequence``
========== ==================================== ==========================

Computation runs time-major in the layer's dtype; inputs are cast.  Every check
happens before anything is computed or stored, so a call that raises leaves the
layer exactly as it was.
"""

from __future__ import annotations

import contextlib
import math
import operator

import numpy as np

from numrnn._exclusive import ExclusiveUse
from numrnn import _validation as check
from numrnn.backends import get_backend, host_copy, is_device_array
from numrnn.cells import GATES, STATE_SIZES

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]


def _assign(target, values):
    """``target[...] = values`` for a NumPy or a device parameter (copied to the device)."""
    if isinstance(target, np.ndarray):
        target[...] = values
    else:
        target.copy_to_device(np.ascontiguousarray(values, dtype=target.dtype))


def _tuple_getter(keys):
    """``mapping -> tuple(mapping[k] for k in keys)`` in one C call (``itemgetter``
    returns a bare item for one key)."""
    if len(keys) == 1:
        key = keys[0]
        return lambda mapping: (mapping[key],)
    return operator.itemgetter(*keys)


class RNNBase(ExclusiveUse):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Parameters
    ----------
    input_size : int
        Features per timestep, ``I``.
    hidden_size : int
        Units per layer and direction, ``H``.
    num_layers : int, default 1
        Stacked layers, ``L``; layer ``k > 0`` reads the output of layer ``k - 1``.
    bias : bool, default True
        Whether to use ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Whether ``x``, ``y``, ``dy`` and ``dx`` are (B, T, F) instead of (T, B, F).
        States are always (L*D, B, H).
    dropout : float in [0, 1), default 0
        Dropout probability on the outputs of every layer but the last, in training
        mode only.  Masks are drawn from a generator seeded by ``seed``.
    bidirectional : bool, default False
        Run a second direction over the reversed sequence and concatenate outputs.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation.
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Where kernels run (see :func:`numrnn.backends.get_backend`).
    seed : int or None
        Seed for the initial weights, ``U(-1/sqrt(H), 1/sqrt(H))`` as in PyTorch, and
        for dropout masks: an integer in ``[0, 2**63)``.  None draws one, which is
        kept in :attr:`seed` and :meth:`config`, so the saved config of any layer
        rebuilds the same initial weights.
    """

    _exclusive_noun = "layer"

    _family = ""

    #: With the CUDA backend: return device arrays (Numba ``DeviceNDArray``, which
    #: expose ``__cuda_array_interface__``) from forward, backward and step instead
    #: of NumPy arrays.  Inputs may be device arrays either way.  Ignored on the CPU.
    device_output = False

    _device_params = False

    @property
    def device_params(self) -> bool:
        """Whether :attr:`params` and :attr:`grads` live on the GPU (CUDA backend only).

        Set to True to move them there as Numba device arrays: forward, backward and
        step then read the weights and accumulate the gradients in place on the
        device, and the optimisers of :mod:`numrnn.optim` update them there, so
        nothing crosses to the host between training steps.  :meth:`state_dict`
        still returns NumPy copies, :meth:`load_state_dict` and
        :meth:`reset_parameters` copy to the device, and :meth:`zero_grad` clears on
        the device.  Setting it replaces the arrays of both dicts (the dicts stay the
        same objects; optimisers key their state by name, so they keep working).
        Set it back to False to bring them home as NumPy arrays.
        """
        return self._device_params

    @device_params.setter
    def device_params(self, value):
        value = check.check_bool(value, "device_params")
        if value == self._device_params:
            return
        if value and getattr(self._backend, "layers", None) is None:
            raise ValueError(
                f"device_params=True needs a layer on the GPU (backend='cuda'); this one runs on "
                f"{self._backend.name!r}"
            )
        from numrnn.backends import cuda as kernels

        def move(array):
            if not value:
                return host_copy(array) if kernels.is_device_array(array) else array
            return kernels.contiguous(array, self.dtype)  # NumPy arrays are copied over, device ones kept

        moved = [(store, {name: move(array) for name, array in store.items()}) for store in (self.params, self.grads)]
        for store, arrays in moved:
            store.update(arrays)
        self._device_params = value

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=np.float32,
        backend="auto",
        seed=None,
    ):
        self.input_size = check.check_positive_int(input_size, "input_size")
        self.hidden_size = check.check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check.check_positive_int(num_layers, "num_layers")
        self.bias = check.check_bool(bias, "bias")
        self.batch_first = check.check_bool(batch_first, "batch_first")
        self.bidirectional = check.check_bool(bidirectional, "bidirectional")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.dtype = check.check_dtype(dtype)
        self.seed = check.check_seed(seed)
        self._backend = get_backend(backend)
        self.backend_name = backend
        self.training = True
        self._saved = None
        self._backward_ran = False  # a backward consumed what the last forward saved
        self._init_exclusive()  # forward and backward refuse a second thread (numrnn._exclusive)
        self._workspaces = {}  # backend buffers reused across calls, per layer-direction
        self.params = {}
        self._seed_generators(self.seed)
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}

    # ------------------------------------------------------------------ structure

    @property
    def num_directions(self) -> int:
        """``D``: 2 if bidirectional else 1."""
        return 2 if self.bidirectional else 1

    @property
    def cell(self) -> str:
        """Kernel name of the cell: rnn_tanh, rnn_relu, lstm, gru or gru_reset_before."""
        return self._family

    @property
    def state_size(self) -> int:
        """Number of state arrays: 2 for the LSTM (h, c), else 1."""
        return STATE_SIZES[self._family]

    def _param_names(self, layer, direction):
        cache = self.__dict__.setdefault("_param_name_cache", {})
        names = cache.get((layer, direction))
        if names is None:
            names = cache[(layer, direction)] = self._make_param_names(layer, direction)
        return names

    def _make_param_names(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        names = [f"weight_ih{suffix}", f"weight_hh{suffix}"]
        if self.bias:
            names += [f"bias_ih{suffix}", f"bias_hh{suffix}"]
        return tuple(names)

    def _param_shapes(self):
        gates = GATES[self._family] * self.hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                names = self._param_names(layer, direction)
                shapes[names[0]] = (gates, layer_input)
                shapes[names[1]] = (gates, self.hidden_size)
                if self.bias:
                    shapes[names[2]] = (gates,)
                    shapes[names[3]] = (gates,)
        return shapes

    def _seed_generators(self, seed):
        """Draw the initial weights and seed the dropout masks from ``seed``."""
        init_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        self._dropout_rng = np.random.default_rng(dropout_seed)
        self._reset_parameters(np.random.default_rng(init_seed))

    def _reset_parameters(self, rng):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes().items():
            values = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            if name in self.params:
                _assign(self.params[name], values)
            else:
                self.params[name] = values

    def reset_parameters(self, seed=None):
        """Draw new weights from ``U(-1/sqrt(H), 1/sqrt(H))`` and zero the gradients, in place.

        ``seed`` (int, or None to draw one) becomes the layer's :attr:`seed`, so the
        weights and dropout masks are those of a new layer built with that seed, and
        :meth:`config` keeps reproducing them.  The arrays in :attr:`params` and
        :attr:`grads` stay the same objects, so an optimiser holding them keeps working.
        """
        seed = check.check_seed(seed)
        self._seed_generators(seed)
        self.seed = seed
        self.zero_grad()
        self._saved = None

    def _weights(self, layer, direction):
        names = self._param_names(layer, direction)
        w_ih, w_hh = self.params[names[0]], self.params[names[1]]
        if self.bias:
            return w_ih, w_hh, self.params[names[2]], self.params[names[3]]
        zeros = np.zeros(w_ih.shape[0], dtype=self.dtype)
        return w_ih, w_hh, zeros, zeros

    # ------------------------------------------------------------------ modes and state

    def train(self, mode=True):
        """Training mode (dropout active); returns ``self``."""
        self.training = check.check_bool(mode, "mode")
        return self

    def eval(self):
        """Evaluation mode (no dropout); returns ``self``."""
        return self.train(False)

    def zero_grad(self):
        """Set every gradient in :attr:`grads` to zero (in place)."""
        for value in self.grads.values():
            if isinstance(value, np.ndarray):
                value.fill(0)
            else:
                from numrnn.backends import cuda as kernels

                kernels.fill_zero(value)

    def parameters(self):
        """The parameter dict (the arrays themselves, not copies)."""
        return self.params

    def named_parameters(self):
        """``(name, array)`` pairs in PyTorch order."""
        return list(self.params.items())

    def state_dict(self):
        """Copies of the parameters, keyed by PyTorch names."""
        return {name: host_copy(value) for name, value in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load parameters (cast to the layer's dtype) from a dict of arrays.

        Raises ``ValueError`` naming missing, unexpected or wrong-shaped entries; on
        error nothing is changed.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        expected = self._param_shapes()
        missing = [name for name in expected if name not in state_dict]
        unexpected = [name for name in state_dict if name not in expected]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the layer: missing {missing}, unexpected {unexpected}")
        loaded = {}
        for name, shape in expected.items():
            array = check.as_float_array(state_dict[name], f"state_dict[{name!r}]", self.dtype)
            check.check_shape(array, shape, f"state_dict[{name!r}]")
            loaded[name] = array
        for name, array in loaded.items():
            _assign(self.params[name], array)
        self._saved = None

    def config(self):
        """Constructor arguments as a JSON-serialisable dict (``type(self)(**config)``)."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype.name,
            "backend": self.backend_name,
            "seed": self.seed,
            **self._extra_config(),
        }

    def _extra_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ validation

    def _check_params(self):
        """Raise unless every entry of :attr:`params` is what the kernels take.

        Entries may be replaced (``layer.params[name] = array``), so every call that
        reads the weights checks each one (:func:`numrnn._validation.check_params`):
        present, an array of the layer's dtype and shape, C-contiguous and, on the
        host, finite.  Device arrays (with :attr:`device_params`) are checked for kind,
        dtype and shape only.
        """
        check.check_params(self.params, self._expected_shapes(), self.dtype, "layer",
                           is_device=is_device_array if self._device_params else None)

    def _expected_shapes(self):
        shapes = self.__dict__.get("_expected_shapes_cache")
        if shapes is None:
            shapes = self.__dict__["_expected_shapes_cache"] = self._param_shapes()
        return shapes

    def _check_input(self, x):
        """Return (x time-major contiguous (T, B, I), owned by the layer; batched flag)."""
        original = x
        x = check.as_float_array(x, "x", self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D (T, B, I) or 2-D unbatched (T, I), got {x.ndim}-D with shape {x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have {self.input_size} features (input_size) in its last axis, got {x.shape[2]}")
        if x.shape[0] == 0:
            raise ValueError("x must hold at least one timestep, got a sequence of length 0")
        if x.shape[1] == 0:
            raise ValueError("x must hold at least one sequence, got a batch of size 0")
        x = np.ascontiguousarray(x)
        if np.shares_memory(x, original):
            x = x.copy()  # backward uses x: the caller may change their array in between
        return x, batched

    def _check_state(self, state, batch, batched, name):
        """Return a tuple of ``state_size`` arrays (L*D, B, H), zeros for None."""
        shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if state is None:
            return tuple(np.zeros(shape, dtype=self.dtype) for _ in range(self.state_size))
        if self.state_size == 2:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name} of an LSTM must be a pair (h, c) of arrays or None, got {type(state).__name__}")
            parts = state
            labels = (f"{name}[0] (h)", f"{name}[1] (c)")
        else:
            if isinstance(state, tuple) and len(state) == 2 and all(isinstance(p, np.ndarray) or p is None for p in state):
                raise TypeError(f"{name} of {type(self).__name__} must be a single array h, got a pair")
            parts = (state,)
            labels = (name,)
        out = []
        for part, label in zip(parts, labels):
            if part is None:
                out.append(np.zeros(shape, dtype=self.dtype))
                continue
            array = check.as_float_array(part, label, self.dtype)
            expected = shape if batched else (shape[0], shape[2])
            check.check_shape(array, expected, label)
            out.append(np.ascontiguousarray(array if batched else array[:, None, :]))
        return tuple(out)

    # ------------------------------------------------------------------ forward

    def forward(self, x, state=None, lengths=None):
        """Run the layer over a batch of sequences and save what backward needs.

        Parameters
        ----------
        x : array_like, shape (T, B, I), (B, T, I) if batch_first, or (T, I)
        state : None, array (L*D, B, H), or for the LSTM a pair (h0, c0)
            Initial state; None means zeros.
        lengths : array_like of int, shape (B,), optional
            Valid length of each (right-padded) sequence, in ``[1, T]``.

        Returns
        -------
        y : ndarray, shape (T, B, D*H) (or (B, T, D*H) if batch_first)
            Outputs of the last layer, zero at padded positions.
        state_n : ndarray (L*D, B, H), or the pair (h_n, c_n) for the LSTM
            State after each sequence's last valid step.
        """
        with self._exclusive("forward"):
            return self._forward(x, state, lengths)

    __call__ = forward


    def _forward(self, x, state, lengths):
        self._check_params()
        device = getattr(self._backend, "layers", None)
        if device is not None:  # the CUDA backend: device arrays in and out (numrnn.backends.cuda_layers)
            result = device.forward(self, x, state, lengths)
            self._backward_ran = False
            return result
        x, batched = self._check_input(x)
        steps, batch = x.shape[:2]
        lengths = check.check_lengths(lengths, batch, steps)
        if not batched and not np.all(lengths == steps):
            raise ValueError("lengths must be None for unbatched (2-D) input")
        state0 = self._check_state(state, batch, batched, "state")
        with self._compute_context():
            y, state_n, saved = self._run(x, lengths, state0, dropout=self.training, batched=batched)
        self._saved = saved
        self._backward_ran = False
        return self._present(y, state_n, batched)

    def _run(self, x, lengths, state0, dropout, batched):
        """Time-major forward through all layers; returns (y, state_n tuple, saved)."""
        backend = self._backend
        steps, batch = x.shape[:2]
        hidden, directions = self.hidden_size, self.num_directions
        use_dropout = dropout and self.dropout > 0 and self.num_layers > 1
        keep = 1.0 - self.dropout
        state_n = tuple(np.empty_like(s) for s in state0)
        layer_input = x
        saved_layers, masks = [], []
        for layer in range(self.num_layers):
            outputs, saved_dirs = [], []
            for direction in range(directions):
                index = layer * directions + direction
                out = np.zeros((steps, batch, hidden), dtype=self.dtype)
                outputs.append(out)
                final, saved = backend.layer_forward(
                    self.cell,
                    layer_input,
                    lengths,
                    direction == 1,
                    self._weights(layer, direction),
                    tuple(s[index] for s in state0),
                    out,
                    **self._workspace(index),
                )
                for k, value in enumerate(final):
                    state_n[k][index] = value
                saved_dirs.append(saved)
            saved_layers.append(saved_dirs)
            y = outputs[0] if directions == 1 else np.concatenate(outputs, axis=2)
            if use_dropout and layer < self.num_layers - 1:
                mask = (self._dropout_rng.random(y.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                masks.append(mask)
                layer_input = y * mask
            else:
                masks.append(None)
                layer_input = y
        saved = {"saved_layers": saved_layers, "masks": masks, "shape": (steps, batch), "lengths": lengths, "batched": batched}
        return layer_input, state_n, saved

    def _present(self, y, state_n, batched):
        if not batched:
            y = y[:, 0]
            state_n = tuple(s[:, 0] for s in state_n)
        elif self.batch_first:
            y = y.transpose(1, 0, 2)
        return y, self._pack_state(state_n)

    def _pack_state(self, state):
        return (state[0], state[1]) if self.state_size == 2 else state[0]

    # ------------------------------------------------------------------ backward

    def backward(self, dy, dstate=None):
        """Backpropagate through the last forward call; accumulate parameter gradients.

        Computes the gradient of ``sum(y * dy) + sum(h_n * dh_n)`` (``+ sum(c_n * dc_n)``
        for the LSTM) with respect to the input, the initial state and every
        parameter, from what forward saved.

        Parameters
        ----------
        dy : array_like, same shape as ``y``
        dstate : None, array (L*D, B, H), or for the LSTM a pair (dh_n, dc_n)
            Gradient reaching the final state; None (or a None element) means zero.

        Returns
        -------
        dx : ndarray, same shape as ``x``
        dstate0 : ndarray (L*D, B, H), or the pair (dh0, dc0) for the LSTM
        """
        with self._exclusive("backward"):
            if self._saved is None:
                if self._backward_ran:
                    raise RuntimeError(
                        "backward() already ran for the last forward(): each forward supports one "
                        "backward, as in PyTorch (its buffers hold the gradients now); call forward() again"
                    )
                raise RuntimeError("backward() needs a forward() first: run the layer on an input")
            device = getattr(self._backend, "layers", None)
            if device is not None:
                result = device.backward(self, dy, dstate)
            else:
                result = self._backward_host(dy, dstate)
            self._backward_ran = True
            return result

    def _backward_host(self, dy, dstate):
        saved = self._saved
        steps, batch = saved["shape"]
        batched = saved["batched"]
        dy_arr = check.as_float_array(dy, "dy", self.dtype)
        out_features = self.num_directions * self.hidden_size
        if not batched:
            check.check_shape(dy_arr, (steps, out_features), "dy")
            dy_arr = dy_arr[:, None, :]
        elif self.batch_first:
            check.check_shape(dy_arr, (batch, steps, out_features), "dy")
            dy_arr = dy_arr.transpose(1, 0, 2)
        else:
            check.check_shape(dy_arr, (steps, batch, out_features), "dy")
        dy_arr = np.ascontiguousarray(dy_arr)
        dstate_n = self._check_state(dstate, batch, batched, "dstate")

        self._saved = None  # the backend may consume what forward saved: one backward per forward
        try:
            with self._compute_context():
                dx, dstate0, new_grads = self._backward(saved, dy_arr, dstate_n)
        except BaseException:  # pragma: no cover - kernels do not raise on validated input
            self._saved = saved
            raise
        for name, grad in new_grads.items():
            self.grads[name] += grad
        if not batched:
            return dx[:, 0], self._pack_state(tuple(s[:, 0] for s in dstate0))
        if self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return dx, self._pack_state(dstate0)

    def _workspace(self, index):
        """Keyword arguments giving the backend this layer-direction's reusable buffers."""
        if not getattr(self._backend, "uses_workspace", False):
            return {}
        return {"workspace": self._workspaces.setdefault(index, {})}

    def _compute_context(self):
        context = getattr(self._backend, "compute_context", None)
        return context() if context is not None else contextlib.nullcontext()

    def _backward(self, saved, dy_arr, dstate_n):
        """Time-major backward through all layers: (dx, dstate0 tuple, {name: grad})."""
        directions, hidden = self.num_directions, self.hidden_size
        new_grads = {}
        dstate0 = tuple(np.empty_like(s) for s in dstate_n)
        d_out = dy_arr
        for layer in reversed(range(self.num_layers)):
            dx = None
            for direction in range(directions):
                index = layer * directions + direction
                d_y = d_out if directions == 1 else np.ascontiguousarray(d_out[:, :, direction * hidden : (direction + 1) * hidden])
                dx_dir, d_state, grads = self._backend.layer_backward(
                    saved["saved_layers"][layer][direction], d_y, tuple(s[index] for s in dstate_n)
                )
                for k, value in enumerate(d_state):
                    dstate0[k][index] = value
                dx = dx_dir if dx is None else dx + dx_dir
                for name, grad in zip(self._param_names(layer, direction), grads):
                    new_grads[name] = grad
            if layer > 0:
                mask = saved["masks"][layer - 1]
                d_out = dx * mask if mask is not None else dx
        return dx, dstate0, new_grads

    # ------------------------------------------------------------------ streaming

    def step(self, x_t, state=None):
        """Advance one timestep, for streaming inference (no dropout, nothing saved).

        Parameters
        ----------
        x_t : array_like, shape (B, I) or unbatched (I,)
        state : None, array (L, B, H), or for the LSTM a pair (h, c)
            As returned by the previous call (or zeros for None).

        Returns
        -------
        h_t : ndarray, shape (B, H) or (H,)
            Output of the top layer at this step.
        state : ndarray (L, B, H), or the pair (h, c) for the LSTM

        Notes
        -----
        Built for latency.  For a unidirectional model on the CPU, ``x_t`` a (B, I)
        array (any strides) or an unbatched (I,) array of the layer's dtype, and
        ``state`` what the previous call returned, Python checks only types, and one
        compiled call checks shapes and finiteness and does the step of every layer
        (:func:`numrnn.backends.cpu.step_kernel`, or ``stack_step_kernel`` for
        several layers or no biases): 2.5-3 µs for one LSTM layer of 64 units.
        Any other call (the first, another dtype, a state made by slicing), or a
        failed check, takes the full path, which validates every argument, converts
        what it can and raises the error naming the argument otherwise.
        """
        plan = self._step_plan
        if plan is not None and state is not None and type(x_t) is np.ndarray:
            # inline, not a helper method: a further call costs about 0.1 µs of the ~2.6
            kernel, cell, weights, state_size, layers, hidden, dtype = plan
            batched = x_t.ndim == 2
            if x_t.dtype is dtype and (batched or x_t.ndim == 1):
                params = self.params
                try:
                    if state_size == 2:
                        if type(state) is not tuple:
                            raise TypeError("an LSTM state is a tuple (h, c)")
                        h0, c0 = state
                    else:
                        h0 = c0 = state
                    if not batched:  # (I,) and (L, H) in, as (1, I) and (L, 1, H) views
                        x_t, h0, c0 = x_t[None], h0[:, None], c0[:, None]
                    new_state = np.empty((state_size, layers, len(x_t), hidden), dtype)
                    if type(weights) is tuple:  # one layer with biases: the four names
                        name_ih, name_hh, name_bias_ih, name_bias_hh = weights
                        kernel(cell, x_t, params[name_ih], params[name_hh], params[name_bias_ih],
                               params[name_bias_hh], h0, c0, new_state)
                    else:
                        weights_ih, weights_hh, biases = weights(params)
                        kernel(cell, x_t, weights_ih, weights_hh, biases, h0, c0, new_state)
                except (TypeError, ValueError, IndexError):  # not the fast path's kind of call
                    pass
                else:
                    if not batched:
                        new_state = new_state[:, :, 0]
                    h = new_state[0]
                    return h[layers - 1], ((h, new_state[1]) if state_size == 2 else h)
        self._check_params()
        device = getattr(self._backend, "layers", None)
        if device is not None:
            return device.step(self, x_t, state)
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer: a bidirectional layer must see the whole sequence")
        x, batched = self._check_step_input(x_t)
        batch = x.shape[0]
        state0 = self._check_state(state, batch, batched, "state")
        state0 = tuple(s.reshape(s.shape[0], batch, self.hidden_size) for s in state0)
        self._plan_step()
        plan = self._step_plan
        if plan is not None:  # the validated call runs the fast path's kernel: one kernel per layout to compile
            kernel, cell, weights, state_size, layers, hidden, dtype = plan
            h0 = np.ascontiguousarray(state0[0])
            c0 = np.ascontiguousarray(state0[1]) if state_size == 2 else h0
            stacked = np.empty((state_size, layers, batch, hidden), dtype)
            params = self.params
            if type(weights) is tuple:
                kernel(cell, x, *(params[name] for name in weights), h0, c0, stacked)
            else:
                kernel(cell, x, *weights(params), h0, c0, stacked)
            new_state = tuple(stacked)
            layer_input = stacked[0][layers - 1]
        else:
            layer_input = x
            new_state = tuple(np.empty_like(s) for s in state0)
            for layer in range(self.num_layers):
                final = self._backend.layer_step(self.cell, layer_input, self._weights(layer, 0), tuple(s[layer] for s in state0))
                for k, value in enumerate(final):
                    new_state[k][layer] = value
                layer_input = final[0]
        if not batched:
            return layer_input[0], self._pack_state(tuple(s[:, 0] for s in new_state))
        return layer_input, self._pack_state(new_state)

    _step_plan = None  # set by _plan_step() for models that can take the fast path

    def _plan_step(self):
        """On the first full-path :meth:`step`, set up the fast path where it applies
        (a unidirectional model on a backend with a ``step_kernel``):
        ``(kernel, cell code, weights, state size, L, H, dtype)``, where ``weights``
        is the four parameter names of a single layer with biases (looked up one by
        one: a star-call would cost 0.08 µs more), else a function of :attr:`params`
        to the kernel's three weight tuples.  Both read :attr:`params` on every call,
        so replaced arrays are seen.  The kernel takes only arrays of ``dtype``:
        an ``x_t`` of another dtype makes it raise TypeError, and the full path
        converts it."""
        step_kernel = getattr(self._backend, "step_kernel", None)
        if self._step_plan is not None or self.bidirectional or step_kernel is None:
            return
        from numrnn.backends.cpu import STEP_CELLS

        layers = self.num_layers
        names = [self._param_names(layer, 0) for layer in range(layers)]
        if layers == 1 and self.bias:
            kernel = step_kernel(self.dtype)
            weights = names[0]
        else:
            kernel = step_kernel(self.dtype, layers)
            weights_ih = _tuple_getter([n[0] for n in names])
            weights_hh = _tuple_getter([n[1] for n in names])
            if self.bias:
                biases = _tuple_getter([n[k] for n in names for k in (2, 3)])
            else:
                zeros = (np.zeros(GATES[self._family] * self.hidden_size, dtype=self.dtype),) * (2 * layers)
                biases = lambda params: zeros
            weights = lambda params: (weights_ih(params), weights_hh(params), biases(params))
        self._step_plan = (kernel, STEP_CELLS[self.cell], weights, self.state_size, layers, self.hidden_size, self.dtype)

    def _check_step_input(self, x_t):
        """Full validation of ``x_t`` for :meth:`step`: returns ((B, I) array, batched)."""
        x = check.as_float_array(x_t, "x_t", self.dtype)
        if x.ndim not in (1, 2):
            raise ValueError(f"x_t must be 2-D (B, I) or 1-D unbatched (I,), got {x.ndim}-D with shape {x.shape}")
        batched = x.ndim == 2
        x = x if batched else x[None]
        if x.shape[1] != self.input_size:
            raise ValueError(f"x_t must have {self.input_size} features (input_size) in its last axis, got {x.shape[1]}")
        if x.shape[0] == 0:
            raise ValueError("x_t must hold at least one sequence, got a batch of size 0")
        return np.ascontiguousarray(x), batched


class RNN(RNNBase):
    r"""Elman RNN, :math:`h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})` (as ``torch.nn.RNN``).

    Parameters
    ----------
    input_size, hidden_size : int
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation :math:`\phi`.
    **kwargs
        ``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``,
        ``dtype``, ``backend``, ``seed``: see :class:`RNNBase`.

    Examples
    --------
    >>> rnn = RNN(3, 5, seed=0)
    >>> y, h_n = rnn(np.ones((7, 2, 3)))
    >>> y.shape, h_n.shape
    ((7, 2, 5), (1, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._family = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def _extra_config(self):
        return {"nonlinearity": self.nonlinearity}


class LSTM(RNNBase):
    r"""Long short-term memory layer (as ``torch.nn.LSTM``; equations in :mod:`numrnn.cells.lstm`).

    State is the pair ``(h, c)``, each (L*D, B, H).

    Examples
    --------
    >>> lstm = LSTM(3, 5, seed=0)
    >>> y, (h_n, c_n) = lstm(np.ones((7, 2, 3)))
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    """

    _family = "lstm"


class GRU(RNNBase):
    r"""Gated recurrent unit layer (as ``torch.nn.GRU``; equations in :mod:`numrnn.cells.gru`).

    Parameters
    ----------
    input_size, hidden_size : int
    reset_after : bool, default True
        True: PyTorch/cuDNN form, :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn}))`.
        False: Cho et al. (2014), :math:`n = \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn})`,
        with the same parameter names and shapes.
    **kwargs
        See :class:`RNNBase`.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, reset_after=True, **kwargs):
        self.reset_after = check.check_bool(reset_after, "reset_after")
        self._family = "gru" if self.reset_after else "gru_reset_before"
        super().__init__(input_size, hidden_size, num_layers, **kwargs)

    def _extra_config(self):
        return {"reset_after": self.reset_after}
