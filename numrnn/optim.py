r"""Optimisers that update parameter dicts in place, and gradient clipping.

An optimiser holds hyperparameters and per-parameter state keyed by parameter *name*; it does
not keep references to the arrays, so a module whose arrays are replaced (``load_state_dict``)
keeps working::

    opt = Adam(lr=1e-3)
    for x, target in batches:
        model.zero_grad()
        value, grad = loss(model(x), target)
        model.backward(grad)
        clip_grad_norm(model.grads, 1.0)
        opt.step(model.params, model.grads)     # updates model.params' arrays in place

The update rules are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``) and give the same
numbers.  Every call validates first (same keys, shapes, finite gradients) and mutates nothing
when it raises.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "OPTIMIZERS",
    "get_optimizer",
    "clip_grad_norm",
    "clip_grad_value",
]


def _check_float(name, value, *, low=None, low_open=False, high=None, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok = math.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "inf)" if high is None else f"{high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {lo or '(-inf, '}{hi}, got {value!r}")
    return value


def _check_params_grads(params, grads):
    """Validate that ``params`` and ``grads`` are dicts of float arrays with matching keys and shapes."""
    for name, d in (("params", params), ("grads", grads)):
        if not isinstance(d, dict):
            raise TypeError(f"{name} must be a dict of name -> ndarray, got {type(d).__name__}")
    if set(params) != set(grads):
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the same keys as params; missing {missing}, unexpected {extra}")
    for key, p in params.items():
        g = grads[key]
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise TypeError(f"params[{key!r}] must be a float ndarray, got {type(p).__name__}"
                            + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else ""))
        if not p.flags.writeable:
            raise ValueError(f"params[{key!r}] must be writeable (it is updated in place)")
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
            raise TypeError(f"grads[{key!r}] must be a real ndarray, got {type(g).__name__}")
        if g.shape != p.shape:
            raise ValueError(f"grads[{key!r}] must have shape {p.shape} like params, got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"grads[{key!r}] contains NaN or inf")


class Optimizer:
    """Base class.  Subclasses define ``_hyper`` (names of the hyperparameters), ``_slots`` (names
    of per-parameter state arrays) and ``_update``."""

    _hyper: tuple = ()
    _slots: tuple = ()

    def __init__(self):
        self.state = {}  # param name -> {slot: ndarray}
        self.steps = 0

    def step(self, params, grads):
        """Apply one update to ``params`` in place using ``grads``.

        Parameters
        ----------
        params : dict of str -> ndarray
            Parameters, updated in place.
        grads : dict of str -> ndarray
            Gradients with the same keys and shapes (not modified).
        """
        _check_params_grads(params, grads)
        for key, p in params.items():
            st = self.state.get(key)
            if st is not None and any(v.shape != p.shape for v in st.values()):
                raise ValueError(
                    f"optimiser state for {key!r} has shape {next(iter(st.values())).shape}, "
                    f"but the parameter has shape {p.shape}; call reset() for a new model"
                )
        self.steps += 1
        for key, p in params.items():
            st = self.state.setdefault(key, {})
            g = np.asarray(grads[key], dtype=p.dtype)
            self._update(p, g, st)

    def zero_grad(self, grads):
        """Set every array of ``grads`` to zero in place (a convenience; modules have their own)."""
        for g in grads.values():
            g[...] = 0

    def reset(self):
        """Forget all per-parameter state and the step count."""
        self.state = {}
        self.steps = 0

    # -- state -------------------------------------------------------------------------------
    def config(self):
        """The constructor arguments as a JSON-able dict."""
        return {name: getattr(self, name) for name in self._hyper}

    def state_dict(self):
        """Everything needed to resume: ``{"type", "config", "steps", "state"}``.

        ``state`` maps each parameter name to a dict of NumPy arrays (copies).
        """
        return {
            "type": type(self).__name__,
            "config": self.config(),
            "steps": int(self.steps),
            "state": {k: {s: v.copy() for s, v in st.items()} for k, st in self.state.items()},
        }

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (hyperparameters, step count, state arrays)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = {"type", "config", "steps", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        if state_dict["type"] != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict['type']!r}, not {type(self).__name__!r}")
        new = type(self)(**state_dict["config"])  # validates the hyperparameters
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"state_dict['steps'] must be an int >= 0, got {steps!r}")
        state = {}
        if not isinstance(state_dict["state"], dict):
            raise TypeError("state_dict['state'] must be a dict")
        for key, st in state_dict["state"].items():
            if not isinstance(st, dict) or set(st) != set(new._active_slots()):
                raise ValueError(
                    f"state_dict['state'][{key!r}] must hold {sorted(new._active_slots())}, "
                    f"got {sorted(st) if isinstance(st, dict) else type(st).__name__}"
                )
            arrays = {}
            for slot, v in st.items():
                v = np.asarray(v)
                if v.dtype.kind != "f":
                    raise TypeError(f"state_dict['state'][{key!r}][{slot!r}] must be a float array")
                arrays[slot] = v.copy()
            if len({a.shape for a in arrays.values()}) > 1:
                raise ValueError(f"state_dict['state'][{key!r}] arrays differ in shape")
            state[key] = arrays
        for name in self._hyper:
            setattr(self, name, getattr(new, name))
        self.steps = int(steps)
        self.state = state

    def _active_slots(self):
        return self._slots

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    As ``torch.optim.SGD``, with :math:`g = \nabla + \lambda p`:

    .. math::

        b_1 = g, \quad b_t = \mu b_{t-1} + (1 - \tau) g, \qquad
        p \leftarrow p - \eta \, (g + \mu b_t \text{ if nesterov else } b_t)

    (without momentum, :math:`p \leftarrow p - \eta g`).

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta > 0`.
    momentum : float, default 0.0
        :math:`\mu` in [0, 1).
    dampening : float, default 0.0
        :math:`\tau` in [0, 1].
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0 and dampening 0).
    weight_decay : float, default 0.0
        L2 penalty :math:`\lambda \ge 0` added to the gradient.
    """

    _hyper = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        lr = _check_float("lr", lr, low=0.0, low_open=True)
        momentum = _check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
        dampening = _check_float("dampening", dampening, low=0.0, high=1.0)
        weight_decay = _check_float("weight_decay", weight_decay, low=0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        super().__init__()
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = bool(nesterov), weight_decay

    def _active_slots(self):
        return ("momentum_buffer",) if self.momentum > 0 else ()

    def _update(self, p, g, st):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum > 0:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` (L2 weight decay added to the gradient).

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2, \\
        p \leftarrow p - \eta \, \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate :math:`\eta > 0`.
    betas : (float, float), default (0.9, 0.999)
        :math:`\beta_1, \beta_2` in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon > 0`.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (for decoupled decay use :class:`AdamW`).
    """

    _hyper = ("lr", "betas", "eps", "weight_decay")
    _slots = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        lr = _check_float("lr", lr, low=0.0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        b1 = _check_float("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        b2 = _check_float("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        eps = _check_float("eps", eps, low=0.0, low_open=True)
        weight_decay = _check_float("weight_decay", weight_decay, low=0.0)
        super().__init__()
        self.lr, self.betas, self.eps, self.weight_decay = lr, [b1, b2], eps, weight_decay

    def _update(self, p, g, st):
        b1, b2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        if not st:
            st["exp_avg"] = np.zeros_like(p)
            st["exp_avg_sq"] = np.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        bias1 = 1.0 - b1**self.steps
        bias2 = 1.0 - b2**self.steps
        denom = np.sqrt(v) / math.sqrt(bias2) + self.eps
        p -= (self.lr / bias1) * (m / denom)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``:
    :math:`p \leftarrow p (1 - \eta \lambda)` before the Adam step.

    Parameters are those of :class:`Adam`; ``weight_decay`` defaults to 0.01.
    """

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


#: Optimiser classes by lower-case name.
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(optimizer, **kwargs):
    """Return an optimiser from a name (``"sgd"``, ``"adam"``, ``"adamw"``) or an instance.

    Keyword arguments go to the constructor when a name is given.
    """
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with an optimiser name")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {type(optimizer).__name__}")
    try:
        cls = OPTIMIZERS[optimizer.lower()]
    except KeyError:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}") from None
    return cls(**kwargs)


def _grad_arrays(grads):
    if isinstance(grads, dict):
        arrays = list(grads.values())
    elif isinstance(grads, (list, tuple)):
        arrays = list(grads)
    else:
        raise TypeError(f"grads must be a dict or list of ndarrays, got {type(grads).__name__}")
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError("every gradient must be a float ndarray")
        if not a.flags.writeable:
            raise ValueError("every gradient must be writeable (clipping works in place)")
    return arrays


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    r"""Scale all gradients together so their global norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with :math:`N` the norm of all entries taken together,
    every gradient is multiplied by :math:`\min(1, \text{max\_norm} / (N + 10^{-6}))` in place.

    Parameters
    ----------
    grads : dict of str -> ndarray or list of ndarray
        Gradients, modified in place.
    max_norm : float
        Largest allowed norm, > 0.
    norm_type : float, default 2.0
        The p of the p-norm; ``float("inf")`` for the largest absolute value.

    Returns
    -------
    float
        The total norm *before* clipping (may be inf or NaN; then nothing is scaled).
    """
    arrays = _grad_arrays(grads)
    max_norm = _check_float("max_norm", max_norm, low=0.0, low_open=True)
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm_type must be a number, got {type(norm_type).__name__}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0, got {norm_type}")
    if not arrays:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.vdot(a, a)) for a in arrays))
    else:
        total = sum(float(np.sum(np.abs(a) ** norm_type)) for a in arrays) ** (1.0 / norm_type)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1.0:  # NaN / inf totals: leave the gradients alone
        for a in arrays:
            a *= coef
    return total


def clip_grad_value(grads, clip_value):
    """Clip every gradient entry to ``[-clip_value, clip_value]`` in place.

    Parameters
    ----------
    grads : dict of str -> ndarray or list of ndarray
        Gradients, modified in place.
    clip_value : float
        Bound, > 0.
    """
    arrays = _grad_arrays(grads)
    clip_value = _check_float("clip_value", clip_value, low=0.0, low_open=True)
    for a in arrays:
        np.clip(a, -clip_value, clip_value, out=a)
