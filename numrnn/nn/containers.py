"""Containers of modules: :class:`Sequential`, and :func:`module_spec` / :func:`module_from_spec`."""

from __future__ import annotations

from numrnn.nn.activations import ReLU, Sigmoid, Tanh
from numrnn.nn.dropout import Dropout
from numrnn.nn.embedding import Embedding
from numrnn.nn.linear import Linear
from numrnn.nn.module import USED, Module, snapshot
from numrnn.nn.normalization import LayerNorm
from numrnn.nn.reshape import Flatten, LastStep

__all__ = ["Sequential", "module_spec", "module_from_spec"]


def _is_recurrent(module):
    return hasattr(module, "step") and hasattr(module, "state_size")


def _in_module(exc, index, module):
    """``exc`` with ``"Sequential module {index} ({class}): "`` before its message: the same type,
    the original as ``__cause__`` (``exc`` itself when its type takes other arguments)."""
    where = f"Sequential module {index} ({type(module).__name__})"
    try:
        new = type(exc)(f"{where}: {exc}")
    except Exception:
        return exc
    new.__cause__ = exc
    return new


class _ModuleList(list):
    """The modules of a :class:`Sequential` in order (a list, as before); calling it,
    ``seq.modules()``, iterates the whole tree like :meth:`Module.modules`."""

    def __init__(self, items, owner):
        super().__init__(items)
        self._owner = owner

    def __call__(self):
        return Module.modules(self._owner)


def _default_names(n):
    return [str(i) for i in range(n)]


class Sequential(Module):
    """Run modules in order; one parameter dict and one gradient dict for the whole stack.

    A recurrent layer in the stack passes on its output sequence ``y`` (its final state is kept
    in :attr:`states`); ``backward`` runs the modules in reverse and returns the gradient with
    respect to the input.  The modules are the children of the stack, named ``"0"``, ``"1"``, ...
    or by the keys of a dict: :attr:`params`, :attr:`grads` and :meth:`state_dict` use
    ``"{name}.{parameter}"`` keys, as PyTorch's ``Sequential``.

    A call that fails leaves every module as it was (what each saved for backward included), and
    re-raises the error with the module's index and class before its message, e.g.
    ``ValueError("Sequential module 2 (Linear): x must have 5 features ...")``.

    Parameters
    ----------
    *modules
        Modules with ``forward``/``backward``/``params``/``grads`` (numrnn layers, :class:`Linear`,
        :class:`LastStep`, or your own), or one dict (e.g. an ``OrderedDict``) of name -> module.
        A :class:`LastStep` right after a recurrent layer must have the layer's ``batch_first``.

    Attributes
    ----------
    modules : list
        The modules in order (calling it iterates the tree, see :meth:`Module.modules`).
    states : list
        After a forward call, the final state of each recurrent module (None for the others):
        pass it back as ``states=`` to carry the state over (truncated BPTT).
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            names, modules = list(modules[0]), tuple(modules[0].values())
        else:
            names = _default_names(len(modules))
        if not modules:
            raise ValueError("Sequential needs at least one module")
        for i, m in enumerate(modules):
            if not (hasattr(m, "backward") and hasattr(m, "params") and hasattr(m, "grads") and callable(m)):
                raise TypeError(f"module {i} ({type(m).__name__}) must have params, grads, __call__ and backward")
        for i in range(1, len(modules)):
            prev, m = modules[i - 1], modules[i]
            if isinstance(m, LastStep) and _is_recurrent(prev) and getattr(prev, "batch_first", False) != m.batch_first:
                raise ValueError(
                    f"module {i} (LastStep) must have batch_first={prev.batch_first} like module {i - 1} "
                    f"({type(prev).__name__}), got batch_first={m.batch_first}"
                )
        for name, m in zip(names, modules):
            self._register(name, m)
        self.states = [None] * len(modules)

    @property
    def modules(self):
        """The modules in order; ``modules()`` iterates the whole tree (:meth:`Module.modules`)."""
        return _ModuleList(self._children_dict().values(), self)

    def __len__(self):
        return len(self._children_dict())

    def __getitem__(self, index):
        """The module at position ``index`` (int or slice) or named ``index`` (str)."""
        if isinstance(index, str):
            return self._children_dict()[index]
        return self.modules[index]

    def forward(self, x, states=None):
        """Run every module on the output of the previous one.

        Parameters
        ----------
        x : array_like
            Input of the first module.
        states : list, optional
            Initial state per module (None entries, or None for all: zeros); only recurrent
            modules take one.

        Returns
        -------
        The output of the last module.
        """
        modules = self.modules
        if states is None:
            states = [None] * len(modules)
        elif not isinstance(states, (list, tuple)) or len(states) != len(modules):
            raise ValueError(f"states must be a list of {len(modules)} entries (one per module) or None")
        for i, (m, s) in enumerate(zip(modules, states)):
            if s is not None and not _is_recurrent(m):
                raise ValueError(f"states[{i}] must be None: module {i} ({type(m).__name__}) has no state")
        new_states = [None] * len(modules)
        restores = []
        out = x
        try:
            for i, (m, s) in enumerate(zip(modules, states)):
                restores.append(snapshot(m))
                if _is_recurrent(m):
                    out, new_states[i] = m(out, s)
                else:
                    out = m(out)
        except BaseException as exc:
            for restore in reversed(restores):
                restore()
            if isinstance(exc, Exception):
                raise _in_module(exc, i, m)
            raise
        self.states = new_states
        self._save_for_backward(True)
        return out

    def backward(self, dy):
        """Backpropagate ``dy`` (gradient of the output) through every module.

        Gradients do not flow into the initial states; the recurrent modules' gradients of their
        initial states are discarded.  Each forward supports one backward (RuntimeError).

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, gradient with respect to the input of the first module
        """
        self._take_saved()
        modules = self.modules
        grad = dy
        for i in reversed(range(len(modules))):
            m = modules[i]
            try:
                grad = m.backward(grad)
            except Exception as exc:
                raise _in_module(exc, i, m)
            if _is_recurrent(m):
                grad = grad[0]
        self._saved = USED
        return grad

    def config(self):
        config = {"modules": [module_spec(m) for m in self.modules]}
        names = list(self._children_dict())
        if names != _default_names(len(names)):
            config["names"] = names
        return config

    def __repr__(self):
        names = list(self._children_dict())
        if names == _default_names(len(names)):
            inner = ",\n  ".join(repr(m) for m in self.modules)
        else:
            inner = ",\n  ".join(f"({n}): {m!r}" for n, m in zip(names, self.modules))
        return f"Sequential(\n  {inner}\n)"


def _registry():
    from numrnn.nn.recurrent import GRU, LSTM, RNN

    classes = (RNN, LSTM, GRU, Linear, Embedding, LayerNorm, Dropout, Flatten, Tanh, ReLU, Sigmoid, LastStep,
               Sequential)
    return {cls.__name__: cls for cls in classes}


def module_spec(module):
    """A JSON-able description ``{"type": name, "config": ...}`` that :func:`module_from_spec` rebuilds.

    Works for numrnn's layers, the modules of this module and :class:`Sequential` of them.
    """
    name = type(module).__name__
    if _registry().get(name) is not type(module):
        raise TypeError(f"cannot describe a {name}: only {sorted(_registry())} can be saved and rebuilt")
    return {"type": name, "config": module.config()}


def module_from_spec(spec):
    """Rebuild a module (with fresh weights) from :func:`module_spec`'s description."""
    if not isinstance(spec, dict) or "type" not in spec or "config" not in spec:
        raise ValueError(f"spec must be a dict with 'type' and 'config', got {spec!r}")
    registry = _registry()
    cls = registry.get(spec["type"])
    if cls is None:
        raise ValueError(f"unknown module type {spec['type']!r}; known: {sorted(registry)}")
    config = spec["config"]
    if not isinstance(config, dict):
        raise ValueError(f"spec['config'] must be a dict, got {type(config).__name__}")
    if cls is Sequential:
        modules = [module_from_spec(s) for s in config["modules"]]
        names = config.get("names")
        if names is None:
            return Sequential(*modules)
        if not isinstance(names, list) or len(names) != len(modules):
            raise ValueError(f"spec['config']['names'] must be a list of {len(modules)} names, got {names!r}")
        return Sequential(dict(zip(names, modules)))
    return cls(**config)
