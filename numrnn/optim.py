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

Device arrays
-------------
A parameter and its gradient may also be CUDA device arrays (Numba ``DeviceNDArray`` or any
object exposing ``__cuda_array_interface__``), key by key: a model may keep its recurrent layers
on the GPU and a linear head on the host.  Device keys are validated and updated on the device
(:mod:`numrnn.backends.cuda_optim`), their optimiser state lives there too, and only single
scalars (a count of NaN/inf entries, a norm) come back to the host.

Every update is written once, as a plain scalar rule (:func:`sgd_rule`, :func:`adam_rule`,
:func:`clamp_rule`) of arithmetic operators and :func:`sqrt`.  The NumPy path calls the rule with
whole arrays (broadcasting) and writes the results back in place; the CUDA backend compiles the
same function into a device function, with ``sqrt`` bound to ``math.sqrt``, and applies it per
element.  Hyperparameters and per-step scalars (bias corrections, ``1 - beta``) are computed once
on the host and passed in.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn.backends import host_copy, is_device_array

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
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
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


# -------------------------------------------------------------------- update rules (written once)

#: The square root the rules use: NumPy's on the host (arrays), ``math.sqrt`` once compiled for
#: the GPU (:mod:`numrnn.backends.cuda_optim` rebinds this name).
sqrt = np.sqrt


def sgd_rule(param, grad, momentum_buffer, lr, weight_decay, momentum, grad_scale, nesterov, first_step):
    r"""One SGD step for a parameter (an array, or one element in device code).

    With :math:`g = \nabla + \lambda p` (when ``weight_decay`` is not zero) and, when ``momentum``
    :math:`\mu` is not zero, :math:`b = g` on the first step and
    :math:`b = \mu b + (1 - \tau) g` afterwards:

    .. math::

        p \leftarrow p - \eta \, (g + \mu b \text{ if nesterov else } b)

    (:math:`p \leftarrow p - \eta g` without momentum).

    Parameters
    ----------
    param, grad : float or ndarray
        Parameter :math:`p` and gradient :math:`\nabla`.
    momentum_buffer : float or ndarray
        Momentum buffer :math:`b` (not read when ``momentum`` is 0 or on the first step).
    lr, weight_decay, momentum : float
        :math:`\eta`, :math:`\lambda` and :math:`\mu`.
    grad_scale : float
        :math:`1 - \tau` (one minus the dampening).
    nesterov, first_step : bool
        Nesterov momentum; whether the momentum buffer starts now.

    Returns
    -------
    (new_param, new_momentum_buffer)
        The updated values (``momentum_buffer`` unchanged without momentum).
    """
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buffer = grad
        else:
            momentum_buffer = momentum_buffer * momentum + grad_scale * grad
        if nesterov:
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    return param - lr * grad, momentum_buffer


def adam_rule(param, grad, exp_avg, exp_avg_sq, beta1, grad_scale1, beta2, grad_scale2, step_size,
              bias_correction2_sqrt, eps, weight_decay, decoupled, decay_scale):
    r"""One Adam / AdamW step for a parameter (an array, or one element in device code).

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,
        \quad p \leftarrow p - \frac{\eta}{1-\beta_1^t}
        \frac{m}{\sqrt{v} / \sqrt{1-\beta_2^t} + \epsilon}

    with :math:`g = \nabla + \lambda p` (Adam) or, decoupled (AdamW), :math:`g = \nabla` and
    :math:`p \leftarrow p (1 - \eta \lambda)` first; nothing of either when ``weight_decay`` is 0.

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : float or ndarray
        :math:`p`, :math:`\nabla`, :math:`m`, :math:`v`.
    beta1, grad_scale1, beta2, grad_scale2 : float
        :math:`\beta_1`, :math:`1 - \beta_1`, :math:`\beta_2`, :math:`1 - \beta_2`.
    step_size : float
        :math:`\eta / (1 - \beta_1^t)`.
    bias_correction2_sqrt : float
        :math:`\sqrt{1 - \beta_2^t}`.
    eps, weight_decay : float
        :math:`\epsilon`, :math:`\lambda`.
    decoupled : bool
        AdamW's decoupled decay instead of an L2 term in the gradient.
    decay_scale : float
        :math:`1 - \eta \lambda` (used when ``decoupled``).

    Returns
    -------
    (new_param, new_exp_avg, new_exp_avg_sq)
    """
    if weight_decay != 0:
        if decoupled:
            param = param * decay_scale
        else:
            grad = grad + weight_decay * param
    exp_avg = exp_avg * beta1 + grad_scale1 * grad
    exp_avg_sq = exp_avg_sq * beta2 + grad_scale2 * (grad * grad)
    denom = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    return param - step_size * (exp_avg / denom), exp_avg, exp_avg_sq


def clamp_rule(grad, clip_value):
    """``grad`` clamped to ``[-clip_value, clip_value]`` (NaN stays NaN), for :func:`clip_grad_value`."""
    return np.minimum(np.maximum(grad, -clip_value), clip_value)


def _device_ops():
    """:mod:`numrnn.backends.cuda_optim`, imported on first use (it imports numba.cuda)."""
    from numrnn.backends import cuda_optim

    return cuda_optim


def _check_params_grads(params, grads):
    """Validate ``params`` and ``grads``: dicts with the same keys, of float arrays of one shape.

    Per key, a parameter and its gradient are both NumPy arrays or both device arrays; the
    device pairs are checked on the device (:func:`numrnn.backends.cuda_optim.check_pair`).

    Returns
    -------
    dict of str -> device array or None
        For each device key, the gradient as a 1-D contiguous device array of the parameter's
        dtype (a view, or a device copy when the dtypes differ); None for host keys.
    """
    for name, d in (("params", params), ("grads", grads)):
        if not isinstance(d, dict):
            raise TypeError(f"{name} must be a dict of name -> ndarray, got {type(d).__name__}")
    if set(params) != set(grads):
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the same keys as params; missing {missing}, unexpected {extra}")
    device = {}
    for key, p in params.items():
        g = grads[key]
        p_on_device, g_on_device = is_device_array(p), is_device_array(g)
        if p_on_device != g_on_device:
            raise TypeError(
                f"params[{key!r}] and grads[{key!r}] must both be NumPy arrays or both device arrays, "
                f"got {'a device array' if p_on_device else type(p).__name__} and "
                f"{'a device array' if g_on_device else type(g).__name__}"
            )
        if p_on_device:
            device[key] = _device_ops().check_pair(key, p, g)
            continue
        device[key] = None
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
    return device


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
        device = _check_params_grads(params, grads)
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
        lr = _check_float("lr", lr, low=0.0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats, got {betas!r}")
        b1 = _check_float("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        b2 = _check_float("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        eps = _check_float("eps", eps, low=0.0, low_open=True)
        weight_decay = _check_float("weight_decay", weight_decay, low=0.0)
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


def _grad_arrays(grads):
    """The gradient arrays of a dict or list, validated for in-place clipping.

    Host arrays must be writeable float ndarrays; device arrays float and C-contiguous (checked
    by :func:`numrnn.backends.cuda_optim.check_clippable`).
    """
    if isinstance(grads, dict):
        arrays = list(grads.values())
    elif isinstance(grads, (list, tuple)):
        arrays = list(grads)
    else:
        raise TypeError(f"grads must be a dict or list of ndarrays, got {type(grads).__name__}")
    for a in arrays:
        if is_device_array(a):
            _device_ops().check_clippable(a)
            continue
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
        Gradients, modified in place; device arrays are reduced and scaled on the device (one
        float per array comes back to the host).
    max_norm : float
        Largest allowed norm, > 0.
    norm_type : float, default 2.0
        The p of the p-norm; ``float("inf")`` for the largest absolute value.

    Returns
    -------
    float
        The total norm *before* clipping (may be inf or NaN; then nothing is scaled).  Host
        gradients are reduced in float64, so float32 gradients whose squares overflow float32
        still give their finite norm.
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
    def part(a):
        """max |a| (inf-norm), sum a^2 (2-norm) or sum |a|^p of one array, as a float."""
        if is_device_array(a):
            return _device_ops().norm_part(a, norm_type)
        if math.isinf(norm_type):
            return float(np.max(np.abs(a))) if a.size else 0.0
        flat = a.reshape(-1)  # reduced in float64: float32 squares of 2e19 already overflow
        if norm_type == 2.0 and flat.dtype == np.float64:
            return float(np.vdot(flat, flat))
        if norm_type == 2.0:
            return float(np.einsum("i,i->", flat, flat, dtype=np.float64))
        if norm_type == 1.0:
            return float(np.sum(np.abs(flat), dtype=np.float64))
        return float(np.sum(np.abs(flat, dtype=np.float64) ** norm_type))

    if math.isinf(norm_type):
        total = max(part(a) for a in arrays)
    elif norm_type == 2.0:
        total = math.sqrt(sum(part(a) for a in arrays))
    else:
        total = sum(part(a) for a in arrays) ** (1.0 / norm_type)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1.0:  # NaN / inf totals: leave the gradients alone
        for a in arrays:
            if is_device_array(a):
                _device_ops().scale(a, coef)
            else:
                a *= coef
    return total


def clip_grad_value(grads, clip_value):
    """Clip every gradient entry to ``[-clip_value, clip_value]`` in place.

    Parameters
    ----------
    grads : dict of str -> ndarray or list of ndarray
        Gradients, modified in place (device arrays on the device), with :func:`clamp_rule`.
    clip_value : float
        Bound, > 0.
    """
    arrays = _grad_arrays(grads)
    clip_value = _check_float("clip_value", clip_value, low=0.0, low_open=True)
    for a in arrays:
        if is_device_array(a):
            _device_ops().clamp(a, clip_value)
        else:
            a[...] = clamp_rule(a, clip_value)
