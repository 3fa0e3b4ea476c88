r"""The first-order optimisers (SGD, Adam, AdamW), which update parameter dicts in place.

An optimiser holds hyperparameters and per-parameter state keyed by parameter *name*; it does
not keep references to the arrays, so a module whose arrays are replaced (``load_state_dict``)
keeps working.  The update rules are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``) and
give the same numbers.  Every call validates first (same keys, shapes, finite gradients) and
mutates nothing when it raises.

A parameter and its gradient may also be CUDA device arrays, key by key: those keys are
validated and updated on the device (:mod:`numrnn.backends.cuda.optim`), with their optimiser
state kept there.  Both paths apply the scalar rules of :mod:`numrnn.optim.rules`.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn import _validation as check
from numrnn.backends import host_copy, is_device_array
from numrnn.optim.rules import adam_rule, sgd_rule

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OPTIMIZERS", "get_optimizer"]


def _device_ops():
    """:mod:`numrnn.backends.cuda.optim`, imported on first use (it imports numba.cuda)."""
    from numrnn.backends.cuda import optim as cuda_optim

    return cuda_optim


def _check_device_pair(key, param, grad):
    """:func:`numrnn.backends.cuda.optim.check_pair`: a device parameter and gradient, checked there."""
    return _device_ops().check_pair(key, param, grad)


class Optimizer:
    """Base class.  Subclasses define ``_hyper`` (names of the hyperparameters), ``_slots`` (names
    of per-parameter state arrays), ``_update`` (NumPy arrays) and ``_update_device`` (device
    arrays), both built on one scalar rule."""

    _hyper: tuple = ()
    _slots: tuple = ()

    def __init__(self):
        self.state = {}  # param name -> {slot: ndarray, or a device array for a device parameter}
        self.steps = 0

    def step(self, params, grads):
        """Apply one update to ``params`` in place using ``grads``.

        Parameters
        ----------
        params : dict of str -> ndarray or device array
            Parameters, updated in place.  Device arrays (objects exposing
            ``__cuda_array_interface__``, e.g. Numba ``DeviceNDArray``) are updated on the
            device, with their optimiser state kept there.
        grads : dict of str -> ndarray or device array
            Gradients with the same keys and shapes (not modified), of the same kind (host or
            device) as the parameter of each key.

        Raises
        ------
        TypeError
            For non-float arrays, or a key whose parameter and gradient are of different kinds.
        ValueError
            For different keys or shapes, NaN or inf in a gradient, or state of another shape.
            Nothing is modified then.
        """
        device = check.check_params_grads(params, grads, is_device_array, _check_device_pair)
        for key, p in params.items():
            st = self.state.get(key)
            if st is not None and any(tuple(v.shape) != tuple(p.shape) for v in st.values()):
                raise ValueError(
                    f"optimiser state for {key!r} has shape {tuple(next(iter(st.values())).shape)}, "
                    f"but the parameter has shape {tuple(p.shape)}; call reset() for a new model"
                )
        self.steps += 1
        for key, p in params.items():
            st = self.state.setdefault(key, {})
            if device[key] is not None:
                ops = _device_ops()
                ops.state_to_device(st, p.dtype)
                self._update_device(ops, p, device[key], st)
            else:
                for slot, value in st.items():
                    if is_device_array(value):
                        st[slot] = value.copy_to_host()
                g = np.asarray(grads[key], dtype=p.dtype)
                self._update(p, g, st)

    def zero_grad(self, grads):
        """Set every array of ``grads`` to zero in place (a convenience; modules have their own).

        Device arrays are zeroed on the device.
        """
        for g in grads.values():
            if is_device_array(g):
                _device_ops().fill_zero(g)
            else:
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

        ``state`` maps each parameter name to a dict of NumPy arrays (copies; state kept on the
        device for a device parameter is copied to the host).
        """
        return {
            "type": type(self).__name__,
            "config": self.config(),
            "steps": int(self.steps),
            "state": {k: {s: host_copy(v) for s, v in st.items()} for k, st in self.state.items()},
        }

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (hyperparameters, step count, state arrays).

        The state is stored as NumPy arrays; the next :meth:`step` moves the state of a device
        parameter to the device.
        """
        new, steps = self._check_state_dict(state_dict)
        state = {}
        for key, st in state_dict["state"].items():
            if not isinstance(st, dict) or set(st) != set(new._active_slots()):
                raise ValueError(
                    f"state_dict['state'][{key!r}] must hold {sorted(new._active_slots())}, "
                    f"got {sorted(st) if isinstance(st, dict) else type(st).__name__}"
                )
            arrays = {}
            for slot, v in st.items():
                v = host_copy(v)
                if v.dtype.kind != "f":
                    raise TypeError(f"state_dict['state'][{key!r}][{slot!r}] must be a float array")
                arrays[slot] = v
            if len({a.shape for a in arrays.values()}) > 1:
                raise ValueError(f"state_dict['state'][{key!r}] arrays differ in shape")
            state[key] = arrays
        for name in self._hyper:
            setattr(self, name, getattr(new, name))
        self.steps = int(steps)
        self.state = state

    def _check_state_dict(self, state_dict):
        """Check the frame of a :meth:`state_dict` (keys, type, step count, a dict of state).

        Returns
        -------
        (new, steps)
            An optimiser of this type built from ``state_dict["config"]`` (which validates the
            hyperparameters), and the step count as an int.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = {"type", "config", "steps", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        if state_dict["type"] != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict['type']!r}, not {type(self).__name__!r}")
        if not isinstance(state_dict["config"], dict):
            raise TypeError("state_dict['config'] must be a dict")
        new = type(self)(**state_dict["config"])
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"state_dict['steps'] must be an int >= 0, got {steps!r}")
        if not isinstance(state_dict["state"], dict):
            raise TypeError("state_dict['state'] must be a dict")
        return new, int(steps)

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
        lr = check.check_float(lr, "lr", low=0.0, low_open=True)
        momentum = check.check_float(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        dampening = check.check_float(dampening, "dampening", low=0.0, high=1.0)
        weight_decay = check.check_float(weight_decay, "weight_decay", low=0.0)
        nesterov = check.check_bool(nesterov, "nesterov")
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        super().__init__()
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = bool(nesterov), weight_decay

    def _active_slots(self):
        return ("momentum_buffer",) if self.momentum > 0 else ()

    def _coefficients(self):
        """The scalar arguments of :func:`sgd_rule` after the arrays (host floats)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "momentum": self.momentum,
                "grad_scale": 1.0 - self.dampening, "nesterov": self.nesterov}

    def _update(self, p, g, st):
        buf = st.get("momentum_buffer")
        first_step = self.momentum > 0 and buf is None
        if first_step:
            buf = st["momentum_buffer"] = np.empty_like(p)
        new_p, new_buf = sgd_rule(p, g, buf, first_step=first_step, **self._coefficients())
        p[...] = new_p
        if self.momentum > 0:
            buf[...] = new_buf

    def _update_device(self, ops, p, g, st):
        buf = st.get("momentum_buffer")
        first_step = self.momentum > 0 and buf is None
        if first_step:
            buf = st["momentum_buffer"] = ops.empty(p.shape, p.dtype)
        ops.sgd_step(p, g, buf, first_step=first_step, **self._coefficients())


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
        lr = check.check_float(lr, "lr", low=0.0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        b1 = check.check_float(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
        b2 = check.check_float(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)
        eps = check.check_float(eps, "eps", low=0.0, low_open=True)
        weight_decay = check.check_float(weight_decay, "weight_decay", low=0.0)
        super().__init__()
        self.lr, self.betas, self.eps, self.weight_decay = lr, [b1, b2], eps, weight_decay

    def _coefficients(self):
        """The scalar arguments of :func:`adam_rule` after the arrays (host floats, this step)."""
        b1, b2 = self.betas
        return {"beta1": b1, "grad_scale1": 1.0 - b1, "beta2": b2, "grad_scale2": 1.0 - b2,
                "step_size": self.lr / (1.0 - b1**self.steps),
                "bias_correction2_sqrt": math.sqrt(1.0 - b2**self.steps),
                "eps": self.eps, "weight_decay": self.weight_decay, "decoupled": self._decoupled,
                "decay_scale": 1.0 - self.lr * self.weight_decay}

    def _update(self, p, g, st):
        if not st:
            st["exp_avg"] = np.zeros_like(p)
            st["exp_avg_sq"] = np.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        new_p, new_m, new_v = adam_rule(p, g, m, v, **self._coefficients())
        p[...] = new_p
        m[...] = new_m
        v[...] = new_v

    def _update_device(self, ops, p, g, st):
        if not st:
            st["exp_avg"] = ops.zeros(p.shape, p.dtype)
            st["exp_avg_sq"] = ops.zeros(p.shape, p.dtype)
        ops.adam_step(p, g, st["exp_avg"], st["exp_avg_sq"], **self._coefficients())


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
