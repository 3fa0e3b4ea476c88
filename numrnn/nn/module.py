"""The :class:`Module` base: named children, and everything derived from them.

A module keeps its *own* parameters in ``self.params`` (dict name -> array) and their gradients
in ``self.grads`` (the same keys).  Child modules are registered by attribute assignment
(``self.rnn = numrnn.LSTM(...)``) or :meth:`Module.add_module`; from the two, :class:`Module`
derives what PyTorch's ``torch.nn.Module`` derives:

* :meth:`~Module.named_children`, :meth:`~Module.children`, :meth:`~Module.named_modules`,
  :meth:`~Module.modules`;
* :meth:`~Module.named_parameters` and :meth:`~Module.parameters` with PyTorch's dotted names
  (``rnn.weight_ih_l0``, ``decoder.bias``), and :attr:`~Module.params` / :attr:`~Module.grads`
  of the whole tree under those names (the arrays themselves, so one optimiser trains it all);
* :meth:`~Module.train` / :meth:`~Module.eval` and :meth:`~Module.zero_grad` (recursive),
  :meth:`~Module.state_dict` (host copies) and :meth:`~Module.load_state_dict` (validated and
  all-or-nothing), :meth:`~Module.to` (a whole tree to another dtype);
* ``__call__`` runs ``forward``.

:class:`no_grad` is PyTorch's inference context: a forward run inside it saves nothing for
backward, and a ``backward()`` after such a forward raises ``RuntimeError``.

Contract for subclasses
-----------------------
* ``__init__`` calls ``super().__init__()`` first; ``forward`` saves what its backward needs with
  :meth:`Module._save_for_backward` and ``backward`` takes it with :meth:`Module._take_saved`, then
  sets ``self._saved = USED`` once it has succeeded (one backward per forward).
* A child may also be a foreign object with ``params``, ``grads``, ``forward``, ``train``,
  ``state_dict`` and ``load_state_dict`` (e.g. a layer that does not subclass :class:`Module`).
* Hooks a subclass may override: :meth:`Module._save_state` (what a container calls before the
  module runs, to put it back if the call fails) and :meth:`Module._to_dtype` (one module's part
  of :meth:`Module.to`).  A module that reuses buffers across calls and keeps them in a dict
  ``self._workspaces`` gets a second set from the default :meth:`Module._save_state` while a
  backward is pending, so a failed container call cannot overwrite what that backward reads.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np

from numrnn import _validation as check
from numrnn.backends import host_copy

__all__ = ["Module", "no_grad", "is_grad_enabled", "is_module", "snapshot", "default_snapshot", "USED", "NO_GRAD"]

#: ``_saved`` after a backward: the forward's one backward has run.
USED = object()
#: ``_saved`` after a forward under :class:`no_grad`: nothing was saved for backward.
NO_GRAD = object()

_grad_mode = threading.local()


def is_grad_enabled():
    """Whether forward calls in this thread save what backward needs (False inside :class:`no_grad`)."""
    return getattr(_grad_mode, "enabled", True)


class no_grad:
    """Context manager (and decorator) in which forward saves nothing for backward.

    As ``torch.no_grad``: it is per thread and nests; outputs are the same as outside it, and a
    ``backward()`` after a forward run inside it raises ``RuntimeError``.

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn import nn
    >>> lin = nn.Linear(3, 2, seed=0)
    >>> with nn.no_grad():
    ...     y = lin(np.ones((4, 3)))
    >>> y.shape
    (4, 2)
    """

    def __enter__(self):
        stack = _grad_mode.__dict__.setdefault("stack", [])
        stack.append(is_grad_enabled())
        _grad_mode.enabled = False
        return self

    def __exit__(self, *exc_info):
        _grad_mode.enabled = _grad_mode.stack.pop()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)

        return wrapper


_CHILD_ATTRS = ("params", "grads", "forward", "train", "state_dict", "load_state_dict")


def is_module(value):
    """Whether ``value`` can be a child: a :class:`Module`, or an object with its interface."""
    if isinstance(value, Module):
        return True
    if isinstance(value, type):
        return False
    return all(hasattr(value, a) for a in _CHILD_ATTRS) and callable(value)


#: The second set of reused buffers of each module that has run under a container's snapshot
#: (see :meth:`Module._save_state`); weak, so a module's spare buffers go with the module.
_spare_workspaces = weakref.WeakKeyDictionary()


def snapshot(obj):
    """Take the state of ``obj`` before a call that may fail: returns a function that puts it back.

    For a :class:`Module` this is its :meth:`Module._save_state`; for another object, the default
    below (:func:`default_snapshot`).
    """
    if isinstance(obj, Module):
        return obj._save_state()
    return default_snapshot(obj)


def default_snapshot(obj, swap=True):
    """The default :meth:`Module._save_state`: take the state of ``obj`` before a call that may fail.

    Returns a function that restores every attribute the call rebinds (what forward saved for
    backward, ``states`` of a container) and the state of each NumPy generator ``obj`` holds
    (dropout masks), for ``obj`` and its children.  With ``swap``, an object whose
    ``_workspaces`` dict holds reused buffers while a backward is pending (its ``_saved`` is not
    None) runs the call on a second set: its forward would otherwise overwrite, in place, the
    buffers that backward reads.  Children are taken without ``swap``: the container that runs
    them swaps their buffers itself.
    """
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return lambda: None
    before = dict(attrs)
    generators = [(g, g.bit_generator.state) for g in before.values() if isinstance(g, np.random.Generator)]
    workspaces = before.get("_workspaces")
    if swap and isinstance(workspaces, dict) and workspaces and before.get("_saved") is not None:
        obj._workspaces = _spare_workspaces.pop(obj, {})
        _spare_workspaces[obj] = workspaces  # free once this call has replaced what forward saved
    children = [
        c._save_state() if _overrides_save_state(c) else default_snapshot(c, swap=False)
        for c in (before.get("_modules") or {}).values()
    ]

    def restore():
        for restore_child in reversed(children):
            restore_child()
        current = attrs.get("_workspaces")
        if isinstance(current, dict) and current and current is not workspaces:
            _spare_workspaces[obj] = current  # what the failed call wrote: free
        attrs.clear()
        attrs.update(before)
        for g, state in generators:
            g.bit_generator.state = state

    return restore


def _overrides_save_state(obj):
    return isinstance(obj, Module) and type(obj)._save_state is not Module._save_state


class _Children(dict):
    """name -> child module, in registration order."""


class Module:
    """Base class of numrnn's modules: own parameters, named children, and what derives from them.

    Attributes
    ----------
    params : dict
        Set by the subclass to its own parameters (name -> array).  Read on a module with
        children, it is the whole tree's, under dotted names (the arrays themselves).
    grads : dict
        The gradients, keyed like :attr:`params`.
    training : bool
        Training mode (see :meth:`train`).
    """

    def __init__(self):
        d = self.__dict__
        d.setdefault("_modules", _Children())
        d.setdefault("_params", {})
        d.setdefault("_grads", {})
        self.training = True
        self._saved = None

    # ------------------------------------------------------------------ children

    def _children_dict(self):
        modules = self.__dict__.get("_modules")
        if modules is None:
            modules = self.__dict__["_modules"] = _Children()
        return modules

    def __setattr__(self, name, value):
        modules = self._children_dict()
        if name not in ("params", "grads") and is_module(value) and value is not self:
            modules[name] = value
        elif name in modules:
            del modules[name]
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._children_dict().pop(name, None)
        object.__delattr__(self, name)

    def add_module(self, name, module):
        """Register ``module`` as the child ``name`` (also the attribute ``name``).

        Parameters
        ----------
        name : str
            Non-empty, without ``"."``, and not an existing non-module attribute.
        module : Module or an object with ``params``, ``grads``, ``forward``, ``train``,
            ``state_dict`` and ``load_state_dict``
        """
        if not is_module(module):
            raise TypeError(
                f"module {name!r} ({type(module).__name__}) must be a numrnn Module or have "
                f"{', '.join(_CHILD_ATTRS)} and __call__"
            )
        return self._register(name, module)

    def _register(self, name, module):
        """Register ``module`` (already checked) as the child ``name``, after checking the name."""
        if not isinstance(name, str):
            raise TypeError(f"module name must be a str, got {name!r} of type {type(name).__name__}")
        if not name or "." in name:
            raise ValueError(f"module name must be non-empty and contain no '.', got {name!r}")
        if name not in self._children_dict() and (name in self.__dict__ or hasattr(type(self), name)):
            raise ValueError(f"module name {name!r} is already an attribute of {type(self).__name__}")
        self._children_dict()[name] = module
        object.__setattr__(self, name, module)
        return module

    def named_children(self):
        """Iterator of ``(name, child)`` pairs, in registration order."""
        return iter(list(self._children_dict().items()))

    def children(self):
        """Iterator of the direct children."""
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        """Iterator of ``(dotted name, module)`` for this module (name ``prefix``) and all below it."""
        yield prefix, self
        for name, child in self.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Module):
                yield from child.named_modules(full)
            else:
                yield full, child

    def modules(self):
        """Iterator of this module and every module below it."""
        return (m for _, m in self.named_modules())

    # ------------------------------------------------------------------ parameters

    @property
    def params(self):
        """Own parameters, or (with children) the whole tree's under dotted names."""
        own = self.__dict__.setdefault("_params", {})
        if not self._children_dict():
            return own
        return dict(self.named_parameters())

    @params.setter
    def params(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(value).__name__}")
        self.__dict__["_params"] = value

    @property
    def grads(self):
        """Own gradients, or (with children) the whole tree's, keyed like :attr:`params`."""
        own = self.__dict__.setdefault("_grads", {})
        if not self._children_dict():
            return own
        return dict(self._named("grads"))

    @grads.setter
    def grads(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"grads must be a dict of arrays, got {type(value).__name__}")
        self.__dict__["_grads"] = value

    def _named(self, kind, prefix=""):
        yield from ((prefix + k, v) for k, v in self.__dict__.setdefault("_" + kind, {}).items())
        for name, child in self.named_children():
            if isinstance(child, Module):
                yield from child._named(kind, f"{prefix}{name}.")
            else:
                yield from ((f"{prefix}{name}.{k}", v) for k, v in getattr(child, kind).items())

    def named_parameters(self, prefix=""):
        """Iterator of ``(dotted name, array)``: own parameters first, then each child's."""
        return self._named("params", f"{prefix}." if prefix else "")

    def parameters(self):
        """Iterator of the parameter arrays (the arrays themselves), in :meth:`named_parameters` order."""
        return (v for _, v in self.named_parameters())

    def zero_grad(self):
        """Set every gradient of the tree to zero, in place."""
        for g in self.__dict__.setdefault("_grads", {}).values():
            g.fill(0)
        for child in self.children():
            child.zero_grad()

    # ------------------------------------------------------------------ modes

    def train(self, mode=True):
        """Training mode for this module and every child (``mode=False``: evaluation); returns ``self``."""
        mode = check.check_bool(mode, "mode")
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode for the whole tree; returns ``self``."""
        return self.train(False)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ saved state

    def _save_for_backward(self, value):
        """Keep ``value`` for the next backward (nothing under :class:`no_grad`)."""
        self._saved = value if is_grad_enabled() else NO_GRAD

    def _take_saved(self):
        """What the last forward saved, for its one backward; ``RuntimeError`` if there is none.

        The caller marks it used (``self._saved = USED``) once its backward has succeeded.
        """
        saved = self.__dict__.get("_saved")
        name = type(self).__name__
        if saved is USED:
            raise RuntimeError(
                f"{name}.backward() already ran for the last forward(): each forward supports one "
                "backward (as in PyTorch); call forward() again"
            )
        if saved is NO_GRAD:
            raise RuntimeError(
                f"{name}.backward() after a forward() run under numrnn.nn.no_grad(): that forward saved "
                "nothing for backward; run forward() again outside no_grad()"
            )
        if saved is None:
            raise RuntimeError(f"{name}.backward() called before forward(): run the module on an input")
        return saved

    def _save_state(self):
        """Hook: before a container runs this module, return a function that puts it back.

        The default (:func:`default_snapshot`) restores the attributes a call rebinds, NumPy generator
        states, a second set of ``_workspaces`` while a backward is pending, and the children.
        Override it when a module holds other state a forward changes in place.
        """
        return default_snapshot(self)

    def _to_dtype(self, dtype):
        """Hook: this module's part of :meth:`to` (own parameters and gradients, ``dtype``)."""
        own = self.__dict__.setdefault("_params", {})
        grads = self.__dict__.setdefault("_grads", {})
        for k in list(own):
            own[k] = np.ascontiguousarray(own[k], dtype=dtype)
        for k in list(grads):
            grads[k] = np.ascontiguousarray(grads[k], dtype=dtype)
        if "dtype" in self.__dict__:
            self.dtype = dtype
        self._saved = None

    def to(self, dtype):
        """Convert the parameters and gradients of the whole tree to ``dtype``; returns ``self``.

        The arrays are replaced (build the optimiser after calling it), what forward saved is
        dropped, and each module's ``dtype`` becomes ``dtype``.

        Parameters
        ----------
        dtype : {np.float32, np.float64}
        """
        dtype = check.check_dtype(dtype)
        mods = list(self.named_modules())
        for name, m in mods:
            if not isinstance(m, Module) and not hasattr(m, "_to_dtype"):
                raise TypeError(f"module {name!r} ({type(m).__name__}) cannot be converted: it has no _to_dtype()")
        for _, m in mods:
            m._to_dtype(dtype)
        return self

    # ------------------------------------------------------------------ state dicts

    def state_dict(self):
        """Host copies of every parameter of the tree, under :meth:`named_parameters`' names."""
        out = {k: host_copy(v) for k, v in self.__dict__.setdefault("_params", {}).items()}
        for name, child in self.named_children():
            out.update((f"{name}.{k}", v) for k, v in child.state_dict().items())
        return out

    def load_state_dict(self, state_dict):
        """Copy parameters in from ``state_dict`` (same names and shapes; cast to each dtype).

        Raises ``TypeError``/``ValueError`` naming missing, unexpected, wrong-shaped, non-real or
        non-finite entries; on any error the module is left as it was.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        before = self.state_dict()
        expected = {k: (old.shape, old.dtype) for k, old in before.items()}
        loaded = check.check_state_dict(state_dict, expected, type(self).__name__)
        own = self.__dict__.setdefault("_params", {})
        done = []
        try:
            for name, child in self.named_children():
                prefix = name + "."
                child.load_state_dict({k[len(prefix):]: v for k, v in loaded.items() if k.startswith(prefix)})
                done.append((prefix, child))
        except BaseException:
            for prefix, child in done:
                child.load_state_dict({k[len(prefix):]: v for k, v in before.items() if k.startswith(prefix)})
            raise
        for k, p in own.items():
            p[...] = loaded[k]

    # ------------------------------------------------------------------ description

    def config(self):
        """Constructor arguments as a JSON-serialisable dict (``type(self)(**config)``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define config()")

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        except NotImplementedError:
            inner = "".join(f"\n  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.named_children())
            return f"{type(self).__name__}({inner}\n)" if inner else f"{type(self).__name__}()"
        return f"{type(self).__name__}({args})"
