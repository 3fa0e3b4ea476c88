"""What every backend implements: the :class:`Backend` protocol.

The stack driver (:mod:`numrnn.nn.stack`) runs layers x directions x dropout x state
packing for every backend through these methods and nothing else; a backend is the
per-layer kernels plus the few array operations the driver needs between them.
:class:`numrnn.backends.cpu.CPUBackend` gets its array operations from
:class:`numrnn.backends.host_arrays.HostArrays` (NumPy), and
:class:`numrnn.backends.cuda.CUDABackend` from
:class:`numrnn.backends.cuda.arrays.DeviceArrays` (Numba device arrays).

Arrays below are the backend's own kind ("backend arrays": NumPy on the CPU, device
arrays on the GPU), C-contiguous and of the layer's dtype unless said otherwise.
Shapes: ``T`` time, ``B`` batch, ``I`` input features, ``H`` hidden units, ``G`` gates.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, NamedTuple, Optional, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """The interface of a backend object (what :func:`numrnn.backends.get_backend` returns).

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"cuda"``.
    device : bool
        Whether backend arrays live on a GPU (parameters may then be device arrays,
        ``device_params``).
    uses_workspace : bool
        Whether :meth:`layer_forward` takes a ``workspace`` dict of reusable buffers.
    """

    name: str
    device: bool
    uses_workspace: bool

    # ------------------------------------------------------------------ kernels

    def layer_forward(self, cell, x, lengths, reverse, weights, state0, y, **workspace) -> tuple:
        """One layer-direction over a sequence: write ``y`` (T, B, H), return ``(state_n, saved)``.

        ``cell`` is the kernel name (:attr:`numrnn.cells.CellFamily.name`); ``x`` (T, B, I);
        ``lengths`` (B,) int64; ``weights`` ``(weight_ih (G*H, I), weight_hh (G*H, H),
        bias_ih (G*H,), bias_hh (G*H,))``; ``state0`` a tuple of (B, H); with
        :attr:`uses_workspace`, ``workspace=dict`` keeps buffers between calls.
        """

    def layer_backward(self, saved, dy, dstate_n) -> tuple:
        """Backward of one :meth:`layer_forward`: ``(dx (T, B, I), dstate0, (dW_ih, dW_hh, db_ih, db_hh))``."""

    def layer_step(self, cell, x, weights, state0) -> tuple:
        """One timestep, saving nothing: ``x`` (B, I), returns the new state tuple of (B, H)."""

    def step_kernel(self, dtype, layers: Optional[int] = None) -> Optional[Any]:
        """The compiled streaming fast path of ``step()`` (``layers`` None: one layer with
        biases), or None where the backend has none."""

    def compute_context(self) -> ContextManager:
        """The context in which the driver calls the kernels."""

    def check_layer(self, cell, hidden_size, dtype) -> None:
        """Raise ``ValueError`` if a layer of this size cannot run on this backend."""

    # ------------------------------------------------------------------ array operations

    def is_native(self, value) -> bool:
        """Whether ``value`` is an array the border must validate on the backend (device
        arrays on the GPU; never on the CPU, where everything goes through NumPy)."""

    def native_input(self, value, name, ndims) -> Any:
        """``value`` as a backend array, checked for a real dtype and ``ndim in ndims``
        (TypeError / ValueError naming ``name``); shape is the caller's to check."""

    def to_backend(self, array) -> Any:
        """A host (NumPy) array, or a backend array, as a backend array (copied only if needed)."""

    def to_host(self, array) -> Any:
        """A backend array as a NumPy array."""

    def contiguous(self, array, dtype) -> Any:
        """``array`` as a C-contiguous backend array of ``dtype`` (copied only if needed)."""

    def owned_copy(self, array, dtype, swap01: bool = False) -> Any:
        """A new C-contiguous backend array equal to ``array`` cast to ``dtype`` (first two
        axes swapped with ``swap01``)."""

    def nonfinite_count(self, array) -> int:
        """Number of NaN / inf values of a backend array."""

    def empty(self, shape, dtype) -> Any:
        """An uninitialised backend array."""

    def zeros(self, shape, dtype) -> Any:
        """A zero-filled backend array."""

    def direction_outputs(self, steps, batch, hidden, directions, dtype, padded=True) -> tuple:
        """``(y, outs)``: the per-direction output buffers (T, B, H) one layer writes, and
        ``y`` (T, B, D*H) holding them side by side, or None where :meth:`concat_features`
        must join them.  ``padded``: some sequences are shorter than T, and the kernels
        leave their padded positions as they find them (so a host backend zeroes them)."""

    def concat_features(self, parts) -> Any:
        """The arrays ``parts`` (T, B, F_k) side by side along the last axis."""

    def feature_slice(self, array, start, stop) -> Any:
        """``array[:, :, start:stop]`` as a backend array the kernels take."""

    def multiply(self, a, b) -> Any:
        """``a * b`` elementwise (dropout masks), a new backend array."""

    def add(self, a, b) -> Any:
        """``a + b`` elementwise, a new backend array."""

    def set_row(self, target, index, value) -> None:
        """``target[index] = value`` for a (rows, B, H) backend array and a (B, H) one."""

    def swap01(self, array) -> Any:
        """The first two axes of a 3-D backend array swapped (a view where it can be)."""

    def present(self, array, device_output: bool) -> Any:
        """What the user gets: a NumPy array, or the backend array itself with ``device_output``."""

    def accumulate_gradients(self, grads, new_grads) -> None:
        """``grads[name] += new_grads[name]`` for every name; on failure no gradient changes."""

    def fill_zero(self, array) -> None:
        """``array[...] = 0`` in place."""


class FamilyKernels(NamedTuple):
    """The CPU calls of one kernel family, each taking the family's ``variant`` first.

    A CPU kernel module (:mod:`numrnn.backends.cpu.lstm`, or a new family's) exposes one
    as ``KERNELS``; :class:`~numrnn.backends.cpu.CPUBackend` finds it through the
    family's ``backend_modules``.

    ``forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks)`` ->
    ``(state_n, buffers)``: ``x`` (T, B, I); ``weights`` ``(weight_ih (G*H, I), weight_hh
    (G*H, H), bias_ih (G*H,), bias_hh (G*H,))``; ``state0`` a tuple of (B, H); ``y`` the
    (T, B, H) output, zero-filled where some sequence is shorter than T (every valid
    position must be written); ``buffer(name, features)`` a reusable (T, B, features)
    array; ``blocks`` the batch blocks to run in parallel.  Padded steps (``t >=
    lengths[b]``) leave the state and the zeros of ``y`` alone.

    ``backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks)`` ->
    ``(dx, dstate0, (d_weight_ih, d_weight_hh, d_bias_ih, d_bias_hh))``.

    ``step(variant, x, weights, state0)`` -> the new state tuple (``x`` (B, I)).
    """

    forward: Callable
    backward: Callable
    step: Callable


__all__ = ["Backend", "FamilyKernels"]
