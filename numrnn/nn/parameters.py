"""The parameter layout of the recurrent layers: names, shapes, seeding, loading, device arrays.

:class:`StackedParameters` is the part of :class:`numrnn.nn.recurrent.RNNBase` that knows
PyTorch's layout of a stack of recurrent layers: per layer ``k`` and direction,
``weight_ih_l{k}`` (G*H, I or D*H), ``weight_hh_l{k}`` (G*H, H) and, with ``bias``,
``bias_ih_l{k}`` and ``bias_hh_l{k}`` (G*H,), with a ``_reverse`` suffix for the backward
direction (``G``: the cell family's gates).  It draws them as PyTorch does,
``U(-1/sqrt(H), 1/sqrt(H))`` from the layer's seed, loads them from a state dict, checks
them before every call, and moves them to and from the GPU (:attr:`~StackedParameters.device_params`).
"""

from __future__ import annotations

import math

import numpy as np

from numrnn import _validation as check
from numrnn.backends import host_copy

__all__ = ["StackedParameters"]


def _assign(target, values):
    """``target[...] = values`` for a NumPy or a device parameter (copied to the device)."""
    if isinstance(target, np.ndarray):
        target[...] = values
    else:
        target.copy_to_device(np.ascontiguousarray(values, dtype=target.dtype))


class StackedParameters:
    """Mixin of :class:`~numrnn.nn.recurrent.RNNBase`: the parameters of L layers x D directions.

    The host class sets ``input_size``, ``hidden_size``, ``num_layers``, ``num_directions``,
    ``bias``, ``dtype``, ``family`` (its :class:`~numrnn.cells.CellFamily`) and ``_backend``,
    and derives from :class:`~numrnn.nn.module.Module` (``params``, ``grads``, ``_params``,
    ``_saved``), after this class.  Its ``__init__`` calls :meth:`_seed_generators` with
    ``params`` empty, then makes ``grads``.
    """

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
        backend = self._backend
        if value and not backend.device:
            raise ValueError(
                f"device_params=True needs a layer on the GPU (backend='cuda'); this one runs on {backend.name!r}"
            )

        def move(array):
            if not value:
                return host_copy(array) if backend.is_native(array) else array
            return backend.contiguous(array, self.dtype)  # NumPy arrays are copied over, device ones kept

        moved = [(store, {name: move(array) for name, array in store.items()}) for store in (self.params, self.grads)]
        for store, arrays in moved:
            store.update(arrays)
        self._device_params = value

    # ------------------------------------------------------------------ layout

    def _param_names(self, layer, direction):
        cache = self.__dict__.setdefault("_param_name_cache", {})
        names = cache.get((layer, direction))
        if names is None:
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            names = (f"weight_ih{suffix}", f"weight_hh{suffix}") + ((f"bias_ih{suffix}", f"bias_hh{suffix}") if self.bias else ())
            cache[(layer, direction)] = names
        return names

    def _param_shapes(self):
        """``{name: shape}`` of every parameter, in PyTorch order."""
        gates = self.family.gate_rows(self.hidden_size)
        shapes = {}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                names = self._param_names(layer, direction)
                shapes[names[0]] = (gates, layer_input)
                shapes[names[1]] = (gates, self.hidden_size)
                for name in names[2:]:
                    shapes[name] = (gates,)
        return shapes

    def _expected_shapes(self):
        shapes = self.__dict__.get("_expected_shapes_cache")
        if shapes is None:
            shapes = self.__dict__["_expected_shapes_cache"] = self._param_shapes()
        return shapes

    def _weights(self, layer, direction):
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer-direction (zero biases without ``bias``)."""
        names = self._param_names(layer, direction)
        params = self._params  # Module's own-parameter dict (forward reads it per layer-direction)
        if self.bias:
            return params[names[0]], params[names[1]], params[names[2]], params[names[3]]
        zeros = np.zeros(params[names[0]].shape[0], dtype=self.dtype)
        return params[names[0]], params[names[1]], zeros, zeros

    # ------------------------------------------------------------------ values

    def _seed_generators(self, seed):
        """Draw the initial weights and seed the dropout masks from ``seed``."""
        init_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        self._dropout_rng = np.random.default_rng(dropout_seed)
        rng = np.random.default_rng(init_seed)
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

    def zero_grad(self):
        """Set every gradient in :attr:`grads` to zero (in place, on the device for device arrays)."""
        for value in self.grads.values():
            if isinstance(value, np.ndarray):
                value.fill(0)
            else:
                self._backend.fill_zero(value)

    def parameters(self):
        """The parameter dict (the arrays themselves, not copies)."""
        return self.params

    def named_parameters(self):
        """``(name, array)`` pairs in PyTorch order."""
        return list(self.params.items())

    def load_state_dict(self, state_dict):
        """Load parameters (cast to the layer's dtype) from a dict of arrays.

        Raises ``ValueError`` naming missing, unexpected or wrong-shaped entries; on
        error nothing is changed.
        """
        expected = {name: (shape, self.dtype) for name, shape in self._param_shapes().items()}
        loaded = check.check_state_dict(state_dict, expected, "the layer")
        for name, array in loaded.items():
            _assign(self.params[name], array)
        self._saved = None

    def _check_params(self):
        """Raise unless every entry of :attr:`params` is what the kernels take.

        Entries may be replaced (``layer.params[name] = array``), so every call that
        reads the weights checks each one (:func:`numrnn._validation.check_params`):
        present, an array of the layer's dtype and shape, C-contiguous and, on the
        host, finite.  Device arrays (with :attr:`device_params`) are checked for kind,
        dtype and shape only.
        """
        check.check_params(self.params, self._expected_shapes(), self.dtype, "layer",
                           is_device=self._backend.is_native if self._device_params else None)
