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
    "LBFGS",
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


# -------------------------------------------------------------------- L-BFGS


def _check_count(name, value):
    """An int >= 1 (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return int(value)


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    r"""Minimiser of the cubic through :math:`(x_1, f_1)`, :math:`(x_2, f_2)` with slopes
    :math:`g_1, g_2`, clipped to ``bounds`` (default: the interval between the points).

    With :math:`d_1 = g_1 + g_2 - 3 (f_1 - f_2) / (x_1 - x_2)` and
    :math:`d_2 = \sqrt{d_1^2 - g_1 g_2}`, the minimiser, written from the farther point
    :math:`x_b` (the larger one) with :math:`x_a` the other, is

    .. math::

        x_b - (x_b - x_a) \frac{g_b + d_2 - d_1}{g_b - g_a + 2 d_2};

    the midpoint of the bounds when :math:`d_1^2 - g_1 g_2 < 0` (no real minimiser).
    This is the interpolation of ``torch.optim.lbfgs`` (from minFunc's ``polyinterp``).
    """
    if bounds is None:
        low, high = (x1, x2) if x1 <= x2 else (x2, x1)
    else:
        low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if not d2_square >= 0:
        return (low + high) / 2.0
    d2 = np.sqrt(d2_square)
    if x1 <= x2:
        minimum = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        minimum = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(minimum, low), high)


def _strong_wolfe(evaluate, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    r"""Line search along ``d`` for a step satisfying the strong Wolfe conditions.

    .. math::

        f(x + t d) \le f(x) + c_1 t \, g^T d, \qquad |\nabla f(x + t d)^T d| \le -c_2 \, g^T d

    A bracketing phase (steps grow by cubic extrapolation within ``[t + 0.01 (t - t_prev),
    10 t]``) is followed by a zoom phase (cubic interpolation inside the bracket, kept at least a
    tenth of the bracket from its ends when progress stalls), at most ``max_ls`` evaluations
    after the first, as ``torch.optim.lbfgs._strong_wolfe`` (from minFunc's ``WolfeLineSearch``).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(t) -> (loss, flat_grad)`` at ``x + t d`` (leaving the parameters at ``x``).
    t : float
        First trial step.
    d : ndarray, shape (n,)
        Search direction.
    f, g, gtd : float, ndarray (n,), float
        Loss, gradient and directional derivative :math:`g^T d < 0` at ``x``.
    c1, c2, tolerance_change, max_ls :
        Sufficient-decrease and curvature constants, the smallest bracket width (times
        :math:`\max |d|`) worth refining, and the evaluation budget.

    Returns
    -------
    (loss, flat_grad, t, evaluations)
        At the step taken (the lowest point found when no step satisfies the conditions).
    """
    d_norm = np.max(np.abs(d))
    f_new, g_new = evaluate(t)
    evaluations = 1
    gtd_new = np.dot(g_new, d)

    # bracketing: an interval that contains a point satisfying the conditions
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # extrapolate
        previous = t
        t = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                           bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = previous, f_new, g_new, gtd_new
        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = np.dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:  # budget spent while bracketing
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the conditions
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        top, bottom = max(bracket), min(bracket)
        margin = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < margin:  # close to an end of the bracket
            if insufficient_progress or t >= top or t <= bottom:
                t = top - margin if abs(t - top) < abs(t - bottom) else bottom + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = np.dot(g_new, d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            # not a sufficient decrease, or not below the low end: the new high end
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:  # the old low end becomes the high end
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evaluations


class LBFGS(Optimizer):
    r"""Limited-memory BFGS, as ``torch.optim.LBFGS``: the same iterations, line search and
    stopping rules, so the same numbers (to rounding) for the same closure.

    Each :meth:`step` runs up to ``max_iter`` iterations on all parameters taken as one flat
    vector :math:`x` (in the order of the first call's ``params``), with gradient :math:`g`:

    * direction: :math:`d = -g` on the very first iteration, afterwards :math:`d = -H g` by the
      two-loop recursion over the last ``history_size`` pairs :math:`s_k = t_k d_k`,
      :math:`y_k = g_{k+1} - g_k` (a pair is kept only when :math:`y_k^T s_k > 10^{-10}`), with
      initial inverse Hessian :math:`H_0 = (y^T s / y^T y) I` from the latest pair;
    * step: :math:`x \leftarrow x + t d`, with :math:`t = \eta \min(1, 1/\|g\|_1)` on the very
      first iteration and :math:`t = \eta` afterwards, or, with
      ``line_search_fn="strong_wolfe"``, the step found from that first guess by a strong-Wolfe
      line search (:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, as PyTorch);
    * stop when :math:`\max |g| \le` ``tolerance_grad`` (also checked before the first
      iteration), :math:`g^T d > -` ``tolerance_change``, :math:`\max |t d| \le`
      ``tolerance_change``, the loss changed by less than ``tolerance_change``, after
      ``max_iter`` iterations or after ``max_eval`` closure evaluations.

    The history, the last direction and step, and the counters carry over from one
    :meth:`step` to the next, as in PyTorch.

    Parameters
    ----------
    lr : float, default 1
        :math:`\eta > 0`, the step length (or the line search's first guess).
    max_iter : int, default 20
        Iterations per :meth:`step`.
    max_eval : int or None, default None
        Closure evaluations per :meth:`step` (a budget checked after each iteration, which
        also bounds the line search); None means ``max_iter * 5 // 4``.
    tolerance_grad : float, default 1e-7
        Stop when the largest gradient entry is at most this (>= 0).
    tolerance_change : float, default 1e-9
        Stop when the loss, the step or the directional derivative change less (>= 0).
    history_size : int, default 100
        Correction pairs kept.
    line_search_fn : {None, "strong_wolfe"}, default None
        None: fixed steps of length ``t``.

    Attributes
    ----------
    state : dict
        Global state (not per parameter): ``func_evals`` and ``n_iter`` (totals over all
        steps), ``layout`` (the parameter names and shapes in flat order), and after the first
        iteration ``d``, ``t``, ``old_dirs`` (the :math:`y_k`), ``old_stps`` (the :math:`s_k`),
        ``ro`` (:math:`1 / y_k^T s_k`), ``H_diag``, ``prev_flat_grad`` and ``prev_loss``, with
        PyTorch's names.
    steps : int
        Calls of :meth:`step`.

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn.optim import LBFGS
    >>> params = {"x": np.array([-1.5, 2.0])}
    >>> grads = {"x": np.zeros(2)}
    >>> def closure():                      # Rosenbrock: loss, and the gradient into grads
    ...     a, b = params["x"]
    ...     grads["x"][:] = [-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)]
    ...     return (1 - a) ** 2 + 100 * (b - a * a) ** 2
    >>> opt = LBFGS(line_search_fn="strong_wolfe", max_iter=100)
    >>> loss_before = opt.step(params, grads, closure)
    >>> np.allclose(params["x"], [1.0, 1.0])
    True

    With a numrnn model, the closure zeroes the gradients and runs forward and backward::

        def closure():
            model.zero_grad()
            value, grad = loss(model(x), target)
            model.backward(grad)
            return value
        opt.step(model.params, model.grads, closure)

    or pass ``numrnn.train.make_closure(model, loss, x, target)``, which returns
    ``(value, grads)`` pairs.

    Notes
    -----
    The scalars follow PyTorch's types: those PyTorch keeps as tensors (dot products, norms,
    interpolated steps) are NumPy scalars of the parameters' dtype, the losses are Python
    floats, so float32 parameters are also computed in float32 where PyTorch does (with
    NumPy >= 2, whose scalar promotion matches PyTorch's).  Results agree with PyTorch to
    rounding, not bit for bit: PyTorch fuses ``x + a y`` into one multiply-add and sums dot
    products in its own order.

    Unlike PyTorch, a loss or gradient that is NaN or inf raises ``ValueError`` (and so does
    anything raised by the closure), and the parameters are then put back as they were before
    the step, with the optimiser's state unchanged.  Host (NumPy) parameters only.
    :func:`numrnn.train.fit_lbfgs` is a different optimiser (SciPy's L-BFGS-B).
    """

    _hyper = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn")

    def __init__(self, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        lr = _check_float("lr", lr, low=0.0, low_open=True)
        max_iter = _check_count("max_iter", max_iter)
        max_eval = max_iter * 5 // 4 if max_eval is None else _check_count("max_eval", max_eval)
        tolerance_grad = _check_float("tolerance_grad", tolerance_grad, low=0.0)
        tolerance_change = _check_float("tolerance_change", tolerance_change, low=0.0)
        history_size = _check_count("history_size", history_size)
        if line_search_fn is not None and not isinstance(line_search_fn, str):
            raise TypeError(f"line_search_fn must be None or 'strong_wolfe', got {type(line_search_fn).__name__}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        super().__init__()
        self.lr, self.max_iter, self.max_eval = lr, max_iter, max_eval
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.history_size, self.line_search_fn = history_size, line_search_fn

    # -- the arrays ----------------------------------------------------------------------------
    def _layout(self, params, grads):
        """Validate ``params`` (and ``grads`` when not None); return ``[(key, shape), ...]`` in
        flat order (the stored layout once there is one)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of name -> ndarray, got {type(params).__name__}")
        if not params:
            raise ValueError("params must hold at least one array")
        for key, p in params.items():
            if is_device_array(p):
                raise TypeError(f"params[{key!r}] is a device array: LBFGS works on NumPy arrays only")
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{key!r}] must be a float ndarray, got {type(p).__name__}"
                                + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else ""))
            if not p.flags.writeable:
                raise ValueError(f"params[{key!r}] must be writeable (it is updated in place)")
            if not np.all(np.isfinite(p)):
                raise ValueError(f"params[{key!r}] contains NaN or inf")
        if grads is not None:
            if not isinstance(grads, dict):
                raise TypeError(f"grads must be a dict of name -> ndarray or None, got {type(grads).__name__}")
            self._check_grad_keys(params, grads, "grads")
        stored = self.state.get("layout")
        if stored is None:
            return [(key, tuple(p.shape)) for key, p in params.items()]
        current = {key: tuple(p.shape) for key, p in params.items()}
        if current != dict(stored):
            raise ValueError(
                f"params do not match the optimiser's state: it holds {dict(stored)}, got {current}; "
                "call reset() for new parameters"
            )
        return [(key, tuple(shape)) for key, shape in stored]

    @staticmethod
    def _check_grad_keys(params, grads, label):
        if set(params) != set(grads):
            missing = sorted(set(params) - set(grads))
            extra = sorted(set(grads) - set(params))
            raise ValueError(f"{label} must have the same keys as params; missing {missing}, unexpected {extra}")

    # -- one step ------------------------------------------------------------------------------
    def step(self, params, grads, closure=None):
        """Run up to ``max_iter`` L-BFGS iterations, updating ``params`` in place.

        Parameters
        ----------
        params : dict of str -> ndarray
            Parameters (NumPy float arrays), updated in place; the closure must read these
            arrays (e.g. ``model.params``).
        grads : dict of str -> ndarray, or None
            Where the closure leaves the gradients (e.g. ``model.grads``): read after each
            evaluation.  None when the closure returns ``(loss, grads)`` pairs.
        closure : callable
            ``closure()`` re-evaluates the model at the current ``params`` and returns the loss
            (a real number) after filling ``grads`` (zero them first: the layers accumulate), or
            returns a pair ``(loss, grads_dict)`` as :func:`numrnn.train.make_closure` does.
            Called once at the start, then once per iteration (without line search) or once
            per line-search trial.

        Returns
        -------
        float
            The loss of the first evaluation, at the parameters before the step (as PyTorch).

        Raises
        ------
        TypeError
            Without a closure, for a closure result of another kind, device arrays or
            non-float arrays.
        ValueError
            For keys or shapes that do not match (the state's layout included), a NaN or inf
            loss or gradient; the parameters and the state are then as before the call.

        Notes
        -----
        Afterwards ``grads`` holds the gradient of the last evaluation, which may be at a
        line-search trial point, as ``.grad`` in PyTorch.
        """
        if closure is None:
            raise TypeError(
                "LBFGS.step(params, grads, closure) needs a closure that re-evaluates the loss and its "
                "gradients (mini-batch loops such as numrnn.train.fit do not give one; use fit_lbfgs there)"
            )
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        layout = self._layout(params, grads)
        snapshot = {key: params[key].copy() for key, _ in layout}
        try:
            loss, state = self._iterate(params, grads, closure, layout)
        except BaseException:
            for key, value in snapshot.items():
                params[key][...] = value
            raise
        self.state = state
        self.steps += 1
        return loss

    def _iterate(self, params, grads, closure, layout):
        """The iterations of one step; returns (first loss, new state).  Leaves ``self.state`` alone."""
        keys = [key for key, _ in layout]
        dtype = np.result_type(*(params[key].dtype for key in keys))
        sizes = [params[key].size for key in keys]
        offsets = np.cumsum([0] + sizes)
        evaluations = [0]  # closure calls in this step, for messages

        def evaluate():
            """Call the closure: (loss as a Python float, flat gradient of ``dtype``)."""
            evaluations[0] += 1
            out = closure()
            where = f"closure evaluation {evaluations[0]} of this step"
            source = grads
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
                out, source = out
            if isinstance(out, (bool, np.bool_)) or not (
                isinstance(out, (int, float, np.integer, np.floating))
                or (isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype.kind in "fiu")
            ):
                raise TypeError(
                    f"closure must return the loss (a real number) or a pair (loss, grads dict), got "
                    f"{type(out).__name__} at {where}"
                )
            value = float(out)
            if not math.isfinite(value):
                raise ValueError(f"the loss is {value} (NaN or inf) at {where}")
            if source is None:
                raise TypeError("closure returned a bare loss but grads is None: pass the dict the closure fills")
            self._check_grad_keys(params, source, "the gradients")
            flat = np.empty(offsets[-1], dtype=dtype)
            for key, start, stop in zip(keys, offsets[:-1], offsets[1:]):
                g = source[key]
                if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
                    raise TypeError(f"grads[{key!r}] must be a real ndarray, got {type(g).__name__} at {where}")
                if g.shape != params[key].shape:
                    raise ValueError(f"grads[{key!r}] must have shape {params[key].shape} like params, "
                                     f"got {g.shape} at {where}")
                flat[start:stop] = g.reshape(-1)
            if not np.all(np.isfinite(flat)):
                bad = next(k for k, a, b in zip(keys, offsets[:-1], offsets[1:]) if not np.all(np.isfinite(flat[a:b])))
                raise ValueError(f"grads[{bad!r}] contains NaN or inf at {where}")
            return value, flat

        def move(t, d):
            """``x <- x + t d``, in place."""
            for key, start, stop in zip(keys, offsets[:-1], offsets[1:]):
                p = params[key]
                p += t * d[start:stop].reshape(p.shape)

        def largest(v):
            return np.max(np.abs(v))

        old = self.state
        tolerance_grad, tolerance_change = self.tolerance_grad, self.tolerance_change
        state = {"func_evals": old.get("func_evals", 0), "n_iter": old.get("n_iter", 0), "layout": layout}
        for name in ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss"):
            if name in old:
                state[name] = old[name]

        loss, flat_grad = evaluate()
        first_loss = loss
        current_evals = 1
        state["func_evals"] += 1
        if largest(flat_grad) <= tolerance_grad:
            return first_loss, state

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps = list(state.get("old_dirs", [])), list(state.get("old_stps", []))
        ro, h_diag = list(state.get("ro", [])), state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = np.dot(y, s)
                if ys > 1e-10:  # keep the pair (curvature condition)
                    if len(old_dirs) == self.history_size:
                        del old_dirs[0], old_stps[0], ro[0]
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / np.dot(y, y)
                # two-loop recursion: d = -H g
                q = -flat_grad
                alpha = [None] * len(old_dirs)
                for i in reversed(range(len(old_dirs))):
                    alpha[i] = np.dot(old_stps[i], q) * ro[i]
                    q = q - alpha[i] * old_dirs[i]
                d = q * h_diag
                for i in range(len(old_dirs)):
                    beta = np.dot(old_dirs[i], d) * ro[i]
                    d = d + (alpha[i] - beta) * old_stps[i]
            prev_flat_grad = flat_grad
            prev_loss = loss

            # step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.sum(np.abs(flat_grad))) * self.lr
            else:
                t = self.lr
            gtd = np.dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction (to tolerance)
                break

            ls_func_evals = 0
            if self.line_search_fn == "strong_wolfe":
                x_start = {key: params[key].copy() for key in keys}

                def evaluate_along(step, d=d, x_start=x_start):
                    move(step, d)
                    try:
                        return evaluate()
                    finally:
                        for key in keys:
                            params[key][...] = x_start[key]

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    evaluate_along, t, d, loss, flat_grad, gtd, max_ls=self.max_eval - current_evals
                )
                move(t, d)
                converged = largest(flat_grad) <= tolerance_grad
            else:
                move(t, d)
                converged = False
                if n_iter != self.max_iter:  # the last iteration's point is evaluated by the next step
                    loss, flat_grad = evaluate()
                    converged = largest(flat_grad) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # stopping rules
            if n_iter == self.max_iter or current_evals >= self.max_eval or converged:
                break
            if largest(d * t) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return first_loss, state

    # -- state ---------------------------------------------------------------------------------
    _state_arrays = ("d", "prev_flat_grad", "old_dirs", "old_stps", "ro")
    _state_scalars = ("t", "H_diag", "prev_loss")

    def state_dict(self):
        """Everything needed to resume: ``{"type", "config", "steps", "state"}``.

        ``state`` is empty before the first step; afterwards it holds ``func_evals``, ``n_iter``
        (ints), ``layout`` (a list of ``[name, shape]``), and after the first iteration the
        arrays ``d``, ``prev_flat_grad`` (n,), ``old_dirs``, ``old_stps`` (m, n) and ``ro``
        (m,), and the floats ``t``, ``H_diag``, ``prev_loss`` (copies).
        """
        st = self.state
        out = {}
        if st:
            out = {"func_evals": int(st["func_evals"]), "n_iter": int(st["n_iter"]),
                   "layout": [[key, list(shape)] for key, shape in st["layout"]]}
            if "d" in st:
                n = st["d"].size
                dtype = st["d"].dtype
                out["d"] = st["d"].copy()
                out["prev_flat_grad"] = st["prev_flat_grad"].copy()
                for name in ("old_dirs", "old_stps"):
                    out[name] = np.array(st[name], dtype=dtype).reshape(len(st[name]), n)
                out["ro"] = np.array(st["ro"], dtype=dtype).reshape(len(st["ro"]))
                for name in self._state_scalars:
                    out[name] = float(st[name])
        return {"type": type(self).__name__, "config": self.config(), "steps": int(self.steps), "state": out}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned; checks everything before changing anything."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = {"type", "config", "steps", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        if state_dict["type"] != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict['type']!r}, not {type(self).__name__!r}")
        if not isinstance(state_dict["config"], dict):
            raise TypeError("state_dict['config'] must be a dict")
        new = type(self)(**state_dict["config"])  # validates the hyperparameters
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"state_dict['steps'] must be an int >= 0, got {steps!r}")
        src = state_dict["state"]
        if not isinstance(src, dict):
            raise TypeError("state_dict['state'] must be a dict")
        state = {}
        if src:
            label = "state_dict['state']"
            base = {"func_evals", "n_iter", "layout"}
            full = base | set(self._state_arrays) | set(self._state_scalars)
            if set(src) not in (base, full):
                raise ValueError(f"{label} must hold {sorted(base)} and, after an iteration, also "
                                 f"{sorted(full - base)}; got {sorted(src)}")
            for name in ("func_evals", "n_iter"):
                v = src[name]
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"{label}[{name!r}] must be an int >= 0, got {v!r}")
                state[name] = int(v)
            layout = []
            try:
                for key, shape in src["layout"]:
                    if not isinstance(key, str):
                        raise TypeError
                    layout.append((key, tuple(int(n) for n in shape)))
            except (TypeError, ValueError):
                raise ValueError(f"{label}['layout'] must be a list of [name, shape] pairs") from None
            if not layout or len({key for key, _ in layout}) != len(layout):
                raise ValueError(f"{label}['layout'] must list each parameter once, got {src['layout']!r}")
            state["layout"] = layout
            if "d" in src:
                n = sum(math.prod(shape) for _, shape in layout)
                arrays = {name: host_copy(src[name]) for name in self._state_arrays}
                dtype = arrays["d"].dtype
                if dtype.kind != "f":
                    raise TypeError(f"{label}['d'] must be a float array, got dtype {dtype}")
                m = arrays["ro"].shape[0] if arrays["ro"].ndim == 1 else -1
                wanted = {"d": (n,), "prev_flat_grad": (n,), "old_dirs": (m, n), "old_stps": (m, n), "ro": (m,)}
                for name, shape in wanted.items():
                    a = arrays[name]
                    if a.dtype != dtype or a.shape != shape or m > new.history_size:
                        raise ValueError(
                            f"{label}[{name!r}] must be a {dtype} array of shape {shape} (n = {n} entries, "
                            f"m = {m} <= history_size pairs), got {a.dtype} {a.shape}"
                        )
                    if not np.all(np.isfinite(a)):
                        raise ValueError(f"{label}[{name!r}] contains NaN or inf")
                scalars = {}
                for name in self._state_scalars:
                    scalars[name] = _check_float(f"{label}[{name!r}]", src[name])
                state.update(
                    d=arrays["d"], prev_flat_grad=arrays["prev_flat_grad"],
                    old_dirs=list(arrays["old_dirs"]), old_stps=list(arrays["old_stps"]),
                    ro=[dtype.type(v) for v in arrays["ro"]],
                    t=scalars["t"], H_diag=dtype.type(scalars["H_diag"]), prev_loss=scalars["prev_loss"],
                )
        for name in self._hyper:
            setattr(self, name, getattr(new, name))
        self.steps = int(steps)
        self.state = state


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
