"""Cell math, written once as scalar functions, and the registry of cell families.

Each module holds one cell family: its equations (in the docstring), its
PyTorch-compatible weight layout (gate order, number of gates) and plain scalar
Python functions for the pointwise forward and backward passes.  The functions
are ordinary Python, so tests can call them directly; the backends compile them
(``@njit`` for the CPU, ``cuda.jit(device=True)`` for the GPU) without a second
copy of any formula.

The registry
------------
Every other module asks the registry, never a string comparison, what a cell is:

>>> from numrnn.cells import cell_family
>>> family = cell_family("lstm")
>>> family.gates, family.state_size, family.state_names
(4, 2, ('h', 'c'))
>>> cell_family("gru_reset_before").kernel, cell_family("gru_reset_before").variant
('gru', False)

A :class:`CellFamily` names the backend kernel family that runs it (``kernel``:
``"rnn"``, ``"lstm"``, ``"gru"``) and the one boolean that selects a variant inside
that kernel family (``variant``: ReLU for the vanilla RNN, reset-after for the GRU).
Each family names, per backend, the module holding its kernels
(``backend_modules``), so a new cell family is one module of pointwise math, one kernel
module per backend, and one :func:`register` call: no backend or layer code changes
(``tests/nn/test_new_cell_family.py`` adds a minimal gated unit that way).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from numrnn.cells import activations, gru, lstm, rnn


@dataclass(frozen=True)
class CellFamily:
    """What one recurrent cell is: its layout, its state and the kernels that run it.

    Attributes
    ----------
    name : str
        The kernel name of the cell (``layer.cell``): ``"rnn_tanh"``, ``"rnn_relu"``,
        ``"lstm"``, ``"gru"`` (reset-after, PyTorch/cuDNN) or ``"gru_reset_before"``
        (Cho et al., 2014).
    kernel : str
        The backend kernel family that runs it: ``"rnn"``, ``"lstm"`` or ``"gru"``.
    variant : bool
        The variant flag the kernel family takes: ``nonlinearity == "relu"`` for
        ``"rnn"``, ``reset_after`` for ``"gru"``; unused (False) for ``"lstm"``.
    gates : int
        Number of stacked ``hidden_size``-row blocks in ``weight_ih`` / ``weight_hh``.
    state_names : tuple of str
        The state arrays, in the order of ``forward``'s state tuple: ``("h",)`` or
        ``("h", "c")``.
    math : module
        The module of :mod:`numrnn.cells` holding the pointwise functions.
    layer : str
        The PyTorch layer class the weights are compatible with (``"RNN"``, ``"LSTM"``,
        ``"GRU"``); io and convert use it.
    backend_modules : tuple of (str, str)
        ``(backend name, module path)`` pairs: the module holding the kernel family's
        kernels for that backend (``"cpu"``: a module with a ``KERNELS``
        :class:`~numrnn.backends.protocol.FamilyKernels`; ``"cuda"``: a kernel module
        like :mod:`numrnn.backends.cuda.lstm`).  A family without a pair for a backend
        cannot run there, and says so.
    """

    name: str
    kernel: str
    variant: bool
    gates: int
    state_names: tuple
    math: ModuleType
    layer: str
    backend_modules: tuple = ()

    @property
    def state_size(self) -> int:
        """Number of state arrays: 2 for the LSTM's ``(h, c)``, 1 otherwise."""
        return len(self.state_names)

    def __copy__(self):
        return self  # frozen, and one object per name: copies of a layer share it

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        # pickled (e.g. sent to a Dask worker) by name: the math module itself can't be
        return cell_family, (self.name,)

    def backend_module(self, backend: str) -> ModuleType:
        """The (imported) module of this family's kernels for ``backend`` ("cpu", "cuda").

        Raises
        ------
        ValueError
            When the family names no module for ``backend``.
        """
        for name, path in self.backend_modules:
            if name == backend:
                return importlib.import_module(path)
        offered = tuple(name for name, _ in self.backend_modules)
        raise ValueError(f"cell {self.name!r} has no kernels for backend {backend!r} (it has them for {offered})")

    def gate_rows(self, hidden_size: int) -> int:
        """Rows of ``weight_ih`` / ``weight_hh``: ``gates * hidden_size``."""
        return self.gates * hidden_size


def _builtin_kernels(kernel):
    return (("cpu", f"numrnn.backends.cpu.{kernel}"), ("cuda", f"numrnn.backends.cuda.{kernel}"))


#: Every cell family, by kernel name.
FAMILIES = {
    family.name: family
    for family in (
        CellFamily("rnn_tanh", "rnn", False, rnn.GATES, ("h",), rnn, "RNN", _builtin_kernels("rnn")),
        CellFamily("rnn_relu", "rnn", True, rnn.GATES, ("h",), rnn, "RNN", _builtin_kernels("rnn")),
        CellFamily("lstm", "lstm", False, lstm.GATES, ("h", "c"), lstm, "LSTM", _builtin_kernels("lstm")),
        CellFamily("gru", "gru", True, gru.GATES, ("h",), gru, "GRU", _builtin_kernels("gru")),
        CellFamily("gru_reset_before", "gru", False, gru.GATES, ("h",), gru, "GRU", _builtin_kernels("gru")),
    )
}

_BUILTIN = tuple(FAMILIES.values())

#: Number of stacked gate blocks in ``weight_ih`` / ``weight_hh`` per cell name.
GATES = {name: family.gates for name, family in FAMILIES.items()}

#: Number of state arrays per cell name: (h, c) for the LSTM, h for the others.
STATE_SIZES = {name: family.state_size for name, family in FAMILIES.items()}


def cell_family(name) -> CellFamily:
    """The :class:`CellFamily` called ``name`` (a kernel name, or a family itself).

    Raises
    ------
    ValueError
        For a name that is not in :data:`FAMILIES`.
    """
    if isinstance(name, CellFamily):
        return name
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"cell must be one of {tuple(FAMILIES)}, got {name!r}") from None


def register(family: CellFamily) -> CellFamily:
    """Add a cell family to the registry (tests use it to add a toy cell); returns it.

    Raises
    ------
    ValueError
        When the name is already registered to a different family.
    """
    if not isinstance(family, CellFamily):
        raise TypeError(f"family must be a CellFamily, got {type(family).__name__}")
    existing = FAMILIES.get(family.name)
    if existing is not None and existing != family:
        raise ValueError(f"a different cell family is already registered as {family.name!r}")
    FAMILIES[family.name] = family
    GATES[family.name] = family.gates
    STATE_SIZES[family.name] = family.state_size
    return family


def unregister(name: str) -> CellFamily:
    """Remove a family added by :func:`register` (the built-in ones stay); returns it."""
    family = cell_family(name)
    if family in _BUILTIN:
        raise ValueError(f"the built-in cell family {name!r} cannot be removed")
    for table in (FAMILIES, GATES, STATE_SIZES):
        del table[name]
    return family


def rnn_family(nonlinearity: str) -> CellFamily:
    """The vanilla RNN family for ``nonlinearity`` (``"tanh"`` or ``"relu"``)."""
    return FAMILIES["rnn_relu" if nonlinearity == "relu" else "rnn_tanh"]


def gru_family(reset_after: bool) -> CellFamily:
    """The GRU family: reset-after (PyTorch/cuDNN) or reset-before (Cho et al.)."""
    return FAMILIES["gru" if reset_after else "gru_reset_before"]


__all__ = [
    "FAMILIES",
    "GATES",
    "STATE_SIZES",
    "CellFamily",
    "activations",
    "cell_family",
    "gru",
    "gru_family",
    "lstm",
    "register",
    "rnn",
    "rnn_family",
    "unregister",
]
