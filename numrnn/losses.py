r"""Loss functions that return their value and their gradient.

Every loss is an object called as ``value, grad = loss(pred, target)``: ``value`` is a Python
float (an array for ``reduction="none"``), ``grad`` the gradient of ``value`` with respect to
``pred`` (same shape and dtype as ``pred``), ready to be handed to a module's ``backward``.
:meth:`Loss.evaluate` returns the same pair and the *total weight* the mean divides by, which
the training loops of :mod:`numrnn.train` use to average over batches.

Regression losses (:data:`LOSSES`) take float targets of the prediction's shape and average over
every element (PyTorch's ``reduction="mean"``):

================  ======================================================================
name              value, with :math:`d = \text{pred} - \text{target}` over N elements
================  ======================================================================
``"mse"``         :math:`\frac1N \sum d^2`
``"mae"``         :math:`\frac1N \sum |d|`  (gradient 0 where :math:`d = 0`)
``"huber"``       :math:`\frac1N \sum \begin{cases} d^2/2 & |d| \le \delta \\
                  \delta (|d| - \delta/2) & \text{otherwise}\end{cases}`
``"gaussian"``    negative log-likelihood of a normal distribution, see :class:`GaussianNLLLoss`
================  ======================================================================

Classification losses (:data:`CLASSIFICATION_LOSSES`) follow PyTorch's names, arguments and
values, with ``reduction`` ``"mean"``, ``"sum"`` or ``"none"``:

=====================  =================================================================
name                   loss
=====================  =================================================================
``"cross_entropy"``    :class:`CrossEntropyLoss`: logits and integer class targets (or class
                       probabilities), ``weight``, ``ignore_index``, ``label_smoothing``
``"nll"``              :class:`NLLLoss`: log-probabilities and integer class targets
``"bce_with_logits"``  :class:`BCEWithLogitsLoss`: logits and 0/1 (or soft) targets of the
                       logits' shape, ``weight``, ``pos_weight``
=====================  =================================================================

**Where the classes are.**  :class:`CrossEntropyLoss` and :class:`NLLLoss` read the classes from
the axis ``class_axis`` of ``pred``, by default the *last* one: ``pred`` (..., C) with targets
(...), which is numrnn's layout for a classifier (N, C) and for a sequence model's output
(T, B, C) with targets (T, B).  For 2-D input this is PyTorch's layout too; PyTorch's
(N, C, d1, d2, ...) layout is ``class_axis=1``.

Examples
--------
>>> import numpy as np
>>> from numrnn.losses import MSELoss
>>> value, grad = MSELoss()(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
>>> value, grad
(2.5, array([1., 2.]))
>>> from numrnn.losses import CrossEntropyLoss
>>> value, grad = CrossEntropyLoss()(np.zeros((2, 4)), np.array([1, 3]))
>>> round(value, 6), grad.shape          # log(4) for uniform logits
(1.386294, (2, 4))
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from numrnn import _validation as check

__all__ = [
    "Loss",
    "MSELoss",
    "MAELoss",
    "HuberLoss",
    "GaussianNLLLoss",
    "ClassificationLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "log_softmax",
    "softmax",
    "get_loss",
    "LOSSES",
    "CLASSIFICATION_LOSSES",
]

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------- helpers


def _weights_config(arr):
    return None if arr is None else arr.tolist()


def _reduce(values, grad, total_weight, reduction):
    """Apply ``reduction`` to per-element ``values`` whose sum has gradient ``grad``.

    "mean" divides by ``total_weight``; a total weight of 0 (every target ignored or weighted 0)
    gives a NaN value and a zero gradient.
    """
    if reduction == "none":
        return values, grad, total_weight
    total = float(np.sum(values, dtype=np.float64))
    if reduction == "sum":
        return total, grad, total_weight
    if total_weight == 0:
        return math.nan, np.zeros_like(grad), total_weight
    grad *= 1.0 / total_weight
    return total / total_weight, grad, total_weight


def log_softmax(x, axis=-1):
    r"""Numerically stable :math:`\log \mathrm{softmax}(x)` along ``axis``, in ``x``'s float dtype.

    .. math::

        \log p_c = (x_c - m) - \log \sum_k e^{x_k - m}, \qquad m = \max_k x_k

    Subtracting the maximum keeps every exponential in :math:`(0, 1]`, so no logit overflows.

    Parameters
    ----------
    x : array_like
        Logits (cast to float64 unless already a float array).
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray, shape and float dtype of ``x``
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    with np.errstate(under="ignore"):  # exp of a very negative logit is 0, as it should be
        lse = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted - lse


def softmax(x, axis=-1):
    r"""Numerically stable :math:`\mathrm{softmax}(x)` along ``axis`` (``exp(log_softmax(x))``)."""
    logp = log_softmax(x, axis=axis)
    with np.errstate(under="ignore"):
        return np.exp(logp)


# ---------------------------------------------------------------------------------- base class


class Loss:
    """Base class: ``value, grad = loss(pred, target)``.

    Subclasses implement ``_compute(pred, target) -> (value, grad, total_weight)`` (a pair
    ``(value, grad)`` is accepted too: the total weight is then the target's size);
    ``_check_target(pred, target)`` validates the target (the base version: a finite float
    array of the expected shape, cast to ``pred``'s dtype, as the regression losses need;
    :class:`ClassificationLoss` takes class indices instead).

    Attributes
    ----------
    name : str
        The name :func:`get_loss` knows this loss by.
    outputs_per_target : int
        How many model outputs one target value needs (2 for :class:`GaussianNLLLoss`: a mean
        and a log-variance; 1 otherwise).
    reduction : str
        ``"mean"`` for the regression losses; the classification losses take it as an argument.
    """

    name = ""
    outputs_per_target = 1
    reduction = "mean"

    def __call__(self, pred, target):
        """Return ``(value, grad)`` for predictions ``pred`` and targets ``target``.

        Parameters
        ----------
        pred : array_like, shape (..., outputs_per_target * k)
            Model output.
        target : array_like, shape (..., k)
            True values; cast to the dtype of ``pred`` (classification losses: see their class).

        Returns
        -------
        value : float
            The reduced loss (an ndarray of per-element losses for ``reduction="none"``).
        grad : ndarray, same shape and dtype as ``pred``
            d value / d pred (for ``reduction="none"``: d sum(value) / d pred, which holds each
            element's own gradient, since every element depends only on its own predictions).

        Raises
        ------
        TypeError, ValueError
            For bad input, naming ``pred`` or ``target``.  Neither array is ever modified.
        """
        value, grad, _ = self.evaluate(pred, target)
        return value, grad

    def evaluate(self, pred, target):
        """Return ``(value, grad, total_weight)``: as :meth:`__call__`, plus what the mean divides by.

        ``total_weight`` is the number of target elements for the regression losses and
        :class:`BCEWithLogitsLoss`, the number of samples for class-probability targets and the
        summed class weights of the non-ignored targets for class-index targets.  Training loops
        average batches with it (``value * total_weight`` is the batch's sum for "mean") and skip
        a batch whose total weight is 0 (it has nothing to learn from).
        """
        pred = check.as_real_array(pred, "pred")
        target = self._check_target(pred, target)
        if pred.size == 0:
            raise ValueError("pred and target must not be empty")
        result = self._compute(pred, target)
        if len(result) == 2:  # a subclass written for the older (value, grad) convention
            result = (*result, np.size(target))
        return result

    def _check_target(self, pred, target):
        target = check.as_real_array(target, "target", dtype=pred.dtype)
        expected = pred.shape[:-1] + (pred.shape[-1] // self.outputs_per_target,) if pred.ndim else ()
        if pred.ndim and pred.shape[-1] % self.outputs_per_target:
            raise ValueError(
                f"pred must have a last axis divisible by {self.outputs_per_target} for the "
                f"{self.name!r} loss, got shape {pred.shape}"
            )
        if target.shape != expected:
            raise ValueError(f"target must have shape {expected} to match pred {pred.shape}, got {target.shape}")
        return target

    def _compute(self, pred, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self):
        """Constructor arguments as a JSON-able dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------------- regression


class MSELoss(Loss):
    """Mean squared error, :math:`\\frac1N \\sum (p - t)^2`."""

    name = "mse"

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        return float(np.mean(diff * diff)), (diff * (2.0 / n)).astype(pred.dtype, copy=False), n


class MAELoss(Loss):
    """Mean absolute error, :math:`\\frac1N \\sum |p - t|`; the gradient is 0 where p = t."""

    name = "mae"

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        return float(np.mean(np.abs(diff))), (np.sign(diff) / n).astype(pred.dtype, copy=False), n


class HuberLoss(Loss):
    """Huber loss (PyTorch's ``HuberLoss``): quadratic for :math:`|d| \\le \\delta`, linear beyond.

    Parameters
    ----------
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; must be > 0.
    """

    name = "huber"

    def __init__(self, delta=1.0):
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
            raise TypeError(f"delta must be a positive float, got {type(delta).__name__}")
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"delta must be a positive finite float, got {delta!r}")
        self.delta = float(delta)

    def _compute(self, pred, target):
        diff = pred - target
        n = diff.size
        absdiff = np.abs(diff)
        small = absdiff <= self.delta
        value = np.where(small, 0.5 * diff * diff, self.delta * (absdiff - 0.5 * self.delta))
        grad = np.where(small, diff, self.delta * np.sign(diff)) / n
        return float(np.mean(value)), grad.astype(pred.dtype, copy=False), n

    def config(self):
        return {"delta": self.delta}


class GaussianNLLLoss(Loss):
    r"""Gaussian negative log-likelihood with a predicted mean and log-variance.

    ``pred`` holds, along its last axis, k means followed by k log-variances
    :math:`s = \log \sigma^2`; the value is

    .. math::

        \frac1N \sum \tfrac12 \left( s + (\mu - t)^2 e^{-s} \right) [+ \tfrac12 \log 2\pi]

    over the N target elements.  Predicting the log-variance keeps the variance positive with no
    constraint.  ``s`` is clipped to [-30, 30] inside the exponential for safety (the gradient
    with respect to ``s`` is zero outside that range).

    Parameters
    ----------
    full : bool, default False
        Add the constant :math:`\tfrac12 \log 2\pi` (PyTorch's ``full``).
    """

    name = "gaussian"
    outputs_per_target = 2
    _LOG_VAR_LIMIT = 30.0

    def __init__(self, full=False):
        if not isinstance(full, (bool, np.bool_)):
            raise TypeError(f"full must be a bool, got {type(full).__name__}")
        self.full = bool(full)

    def _compute(self, pred, target):
        k = pred.shape[-1] // 2
        mean, log_var_raw = pred[..., :k], pred[..., k:]
        log_var = np.clip(log_var_raw, -self._LOG_VAR_LIMIT, self._LOG_VAR_LIMIT)
        inv_var = np.exp(-log_var)
        diff = mean - target
        n = diff.size
        value = 0.5 * (log_var + diff * diff * inv_var)
        if self.full:
            value = value + 0.5 * math.log(2.0 * math.pi)
        grad = np.empty_like(pred)
        grad[..., :k] = diff * inv_var / n
        inside = np.abs(log_var_raw) <= self._LOG_VAR_LIMIT
        grad[..., k:] = np.where(inside, 0.5 * (1.0 - diff * diff * inv_var), 0.0) / n
        return float(np.mean(value)), grad, n

    def config(self):
        return {"full": self.full}


# ---------------------------------------------------------------------------------- classification


class _ClassTarget:
    """A validated class target: ``indices`` (intp, shape of pred without its class axis; 0 where
    ignored) and ``counted`` (bool, False where ignored), or ``probs`` (pred's dtype, classes last)."""

    __slots__ = ("indices", "counted", "probs")

    def __init__(self, indices=None, counted=None, probs=None):
        self.indices, self.counted, self.probs = indices, counted, probs


class ClassificationLoss(Loss):
    """Base class of the losses whose targets are class indices (or class probabilities).

    ``pred`` has the classes on its axis ``class_axis``; the target is either

    * **class indices**, the shape of ``pred`` without that axis: any integer dtype, or floats
      that hold integers (``3.0``); each in ``[0, C)`` or equal to ``ignore_index``; never cast
      to ``pred``'s float dtype; or
    * **class probabilities** (only where :attr:`accepts_probabilities`), the shape of ``pred``:
      any real dtype, cast to ``pred``'s dtype.  As in PyTorch they are not checked to be
      non-negative or to sum to 1.

    Parameters
    ----------
    weight : array_like of shape (C,), optional
        A weight per class, >= 0 (PyTorch's ``weight``); None weighs every class 1.
    ignore_index : int, default -100
        Class-index targets equal to it add nothing to the loss or its gradient, and nothing to
        the mean's denominator.  It may lie inside ``[0, C)`` (that class is then ignored).
    reduction : {"mean", "sum", "none"}, default "mean"
    class_axis : int, default -1
        The axis of ``pred`` that holds the classes: -1 for numrnn's (..., C) layout, 1 for
        PyTorch's (N, C, d1, ...).
    """

    accepts_probabilities = False

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", class_axis=-1):
        self.weight = check.check_weights(weight, "weight", vector=True)
        self.ignore_index = check.check_int(ignore_index, "ignore_index")
        self.reduction = check.check_choice(reduction, "reduction", _REDUCTIONS, ignore_case=False)
        self.class_axis = check.check_int(class_axis, "class_axis")

    # -- validation
    def _axis(self, pred):
        if pred.ndim == 0:
            raise ValueError(f"pred must have a class axis (at least 1 dimension) for the {self.name!r} loss, got a scalar")
        if not -pred.ndim <= self.class_axis < pred.ndim:
            raise ValueError(f"class_axis must lie in [{-pred.ndim}, {pred.ndim}) for pred of shape {pred.shape}, got {self.class_axis}")
        return self.class_axis % pred.ndim

    def _check_target(self, pred, target):
        axis = self._axis(pred)
        n_classes = pred.shape[axis]
        if self.weight is not None and self.weight.size != n_classes:
            raise ValueError(
                f"weight must have one entry per class ({n_classes} on pred's axis {self.class_axis}, pred shape "
                f"{pred.shape}), got {self.weight.size}"
            )
        if target is None:
            raise TypeError("target must be an array of class indices, got None")
        if isinstance(target, np.ma.MaskedArray):
            raise TypeError("target is a masked array, whose mask would be ignored: mark ignored targets with ignore_index")
        try:
            arr = np.asarray(target)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"target must be an array of class indices: {exc}") from None
        index_shape = pred.shape[:axis] + pred.shape[axis + 1 :]
        if self.accepts_probabilities and arr.shape == pred.shape:
            probs = check.as_real_array(arr, "target", dtype=pred.dtype)
            return _ClassTarget(probs=np.moveaxis(probs, axis, -1))
        if arr.shape != index_shape:
            also = f" or {pred.shape} (class probabilities)" if self.accepts_probabilities else ""
            raise ValueError(
                f"target must have shape {index_shape} (class indices){also} to match pred {pred.shape} with "
                f"classes on axis {self.class_axis}, got {arr.shape}"
            )
        indices, counted = _class_indices(arr, n_classes, self.ignore_index)
        return _ClassTarget(indices=indices, counted=counted)

    def _class_weights(self, pred):
        return None if self.weight is None else self.weight.astype(pred.dtype)

    def config(self):
        return {
            "weight": _weights_config(self.weight),
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "class_axis": self.class_axis,
        }


def _class_indices(arr, n_classes, ignore_index):
    """Return ``(indices, counted)`` for class-index targets ``arr``; raise naming ``target``."""
    kind = arr.dtype.kind
    if kind == "b" or kind not in "iuf":
        raise TypeError(f"target must hold integer class indices, got dtype {arr.dtype}")
    if kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError("target contains NaN or inf; it must hold integer class indices")
        fractional = np.floor(arr) != arr
        if fractional.any():
            raise ValueError(f"target must hold integer class indices, got the non-integer value {arr[fractional][0].item()!r}")
        ignored = arr == float(ignore_index)
    else:
        info = np.iinfo(arr.dtype)
        if info.min <= ignore_index <= info.max:
            ignored = arr == arr.dtype.type(ignore_index)
        else:
            ignored = np.zeros(arr.shape, dtype=bool)
    in_range = (arr >= 0) & (arr < n_classes)
    bad = ~(in_range | ignored)
    if bad.any():
        raise ValueError(
            f"target must hold class indices in [0, {n_classes}) (the classes of pred) or ignore_index="
            f"{ignore_index}, got {arr[bad][0].item()!r} ({int(bad.sum())} such entries)"
        )
    counted = ~ignored
    indices = np.where(counted, arr, 0).astype(np.intp)
    return indices, counted


class CrossEntropyLoss(ClassificationLoss):
    r"""Cross-entropy of logits and class targets (PyTorch's ``CrossEntropyLoss``).

    For samples :math:`i` (every position of ``pred`` but its class axis) with logits
    :math:`z_{i,c}` over C classes, :math:`\log p_{i,c} = z_{i,c} - \log \sum_k e^{z_{i,k}}`
    (:func:`log_softmax`, with the maximum subtracted first, in ``pred``'s dtype) and class
    weights :math:`w_c` (1 without ``weight``), smoothing :math:`\varepsilon`:

    **Class-index targets** :math:`y_i`, over the set :math:`I` of samples whose target is not
    ``ignore_index``:

    .. math::

        \ell_i = -(1 - \varepsilon)\, w_{y_i} \log p_{i,y_i}
                 - \frac{\varepsilon}{C} \sum_c w_c \log p_{i,c} \quad (i \in I),
        \qquad \ell_i = 0 \quad (i \notin I)

        \text{mean} = \frac{\sum_i \ell_i}{\sum_{i \in I} w_{y_i}}, \qquad
        \text{sum} = \sum_i \ell_i

    **Class-probability targets** :math:`q_{i,c}` (``target`` of ``pred``'s shape), smoothed to
    :math:`q'_{i,c} = (1 - \varepsilon) q_{i,c} + \varepsilon / C`:

    .. math::

        \ell_i = -\sum_c w_c\, q'_{i,c} \log p_{i,c}, \qquad \text{mean} = \frac1N \sum_i \ell_i

    over the N samples (``ignore_index`` plays no part).  With :math:`a_{i,c}` the coefficient
    of :math:`-\log p_{i,c}` in :math:`\ell_i`, the gradient is

    .. math::

        \frac{\partial \ell_i}{\partial z_{i,c}} = p_{i,c} \sum_k a_{i,k} - a_{i,c},

    divided by the mean's denominator for "mean".  When that denominator is 0 (every target
    ignored, or weighted 0) the "mean" value is NaN, as in PyTorch, and the gradient is zero
    (PyTorch's too when every target is ignored; PyTorch gives NaN gradients when non-ignored
    targets all have weight 0).

    Parameters
    ----------
    weight : array_like of shape (C,), optional
        Class weights :math:`w_c` >= 0.
    ignore_index : int, default -100
        Class-index targets to leave out.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none" returns the per-sample :math:`\ell_i` as an array shaped like a class-index
        target, with the gradient of their sum.
    label_smoothing : float in [0, 1], default 0.0
        :math:`\varepsilon`.
    class_axis : int, default -1
        The class axis of ``pred``: -1 for (N, C) and numrnn's (T, B, C) with targets (N,) and
        (T, B); 1 for PyTorch's (N, C, d1, ...) with targets (N, d1, ...).

    Examples
    --------
    A language model's output (T, B, V) and next-token targets (T, B):

    >>> import numpy as np
    >>> logits = np.zeros((5, 2, 7))
    >>> tokens = np.array([[1, 2], [3, 4], [5, 6], [0, 1], [2, -100]])  # one padded position
    >>> value, grad = CrossEntropyLoss()(logits, tokens)
    >>> round(value, 6) == round(float(np.log(7)), 6), grad.shape, float(abs(grad[4, 1]).max())
    (True, (5, 2, 7), 0.0)
    """

    name = "cross_entropy"
    accepts_probabilities = True

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, class_axis=-1):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, class_axis=class_axis)
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(f"label_smoothing must be a float in [0, 1], got {type(label_smoothing).__name__}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def _compute(self, pred, target):
        axis = self.class_axis % pred.ndim
        z = np.moveaxis(pred, axis, -1)
        n_classes = z.shape[-1]
        w = self._class_weights(pred)
        eps = self.label_smoothing
        logp = log_softmax(z)
        if target.probs is not None:
            coef = target.probs * (1.0 - eps) + eps / n_classes if eps else target.probs.copy()
            if w is not None:
                coef *= w
            total_weight = z.size // n_classes
        else:
            idx, counted = target.indices, target.counted
            w_target = (w[idx] if w is not None else np.ones(idx.shape, dtype=pred.dtype)) * counted
            total_weight = float(np.sum(w_target, dtype=np.float64))
            coef = np.zeros_like(z)
            np.put_along_axis(coef, idx[..., None], ((1.0 - eps) * w_target)[..., None], axis=-1)
            if eps:
                smooth = np.full(n_classes, eps / n_classes, dtype=pred.dtype) if w is None else w * (eps / n_classes)
                coef += smooth * counted[..., None]
        values = -np.sum(coef * logp, axis=-1)
        with np.errstate(under="ignore"):
            p = np.exp(logp)
        grad = p * coef.sum(axis=-1, keepdims=True) - coef
        value, grad, total_weight = _reduce(values, grad, total_weight, self.reduction)
        return value, np.ascontiguousarray(np.moveaxis(grad, -1, axis)), total_weight

    def config(self):
        cfg = super().config()
        cfg["label_smoothing"] = self.label_smoothing
        return cfg


class NLLLoss(ClassificationLoss):
    r"""Negative log-likelihood of log-probabilities and class indices (PyTorch's ``NLLLoss``).

    ``pred`` holds log-probabilities :math:`x_{i,c}` (e.g. from :func:`log_softmax`; not checked)
    with the classes on ``class_axis``; over the non-ignored samples :math:`I`:

    .. math::

        \ell_i = -w_{y_i} x_{i,y_i} \quad (i \in I), \qquad \ell_i = 0 \quad (i \notin I),
        \qquad \text{mean} = \frac{\sum_i \ell_i}{\sum_{i \in I} w_{y_i}}

    and :math:`\partial \ell_i / \partial x_{i,c} = -w_{y_i} [c = y_i]` (divided by the
    denominator for "mean").  Targets are class indices only.  A zero denominator gives a NaN
    "mean" and a zero gradient, as for :class:`CrossEntropyLoss`.

    Parameters
    ----------
    weight : array_like of shape (C,), optional
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
    class_axis : int, default -1
        See :class:`CrossEntropyLoss`.
    """

    name = "nll"

    def _compute(self, pred, target):
        axis = self.class_axis % pred.ndim
        x = np.moveaxis(pred, axis, -1)
        w = self._class_weights(pred)
        idx, counted = target.indices, target.counted
        w_target = (w[idx] if w is not None else np.ones(idx.shape, dtype=pred.dtype)) * counted
        total_weight = float(np.sum(w_target, dtype=np.float64))
        picked = np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]
        values = -(w_target * picked)
        grad = np.zeros_like(x)
        np.put_along_axis(grad, idx[..., None], -w_target[..., None], axis=-1)
        value, grad, total_weight = _reduce(values, grad, total_weight, self.reduction)
        return value, np.ascontiguousarray(np.moveaxis(grad, -1, axis)), total_weight


class BCEWithLogitsLoss(Loss):
    r"""Binary cross-entropy on logits (PyTorch's ``BCEWithLogitsLoss``), numerically stable.

    For logits :math:`x`, targets :math:`y` (usually 0 or 1; soft targets allowed) of the same
    shape, element weights :math:`w` and positive-class weights :math:`\rho` (both broadcast to
    ``pred``'s shape; 1 when not given):

    .. math::

        \ell = w \left[ \rho\, y\, \mathrm{softplus}(-x) + (1 - y)\, \mathrm{softplus}(x) \right]
             = w \left[ (1 - y) x + (1 + (\rho - 1) y)\, \mathrm{softplus}(-x) \right]

    with :math:`\mathrm{softplus}(-x) = \log(1 + e^{-x}) = \max(-x, 0) + \log(1 + e^{-|x|})`, which
    never overflows (logits of :math:`\pm 10^4` are fine in float32), and

    .. math::

        \frac{\partial \ell}{\partial x} = w \left[ (1 + (\rho - 1) y)\, \sigma(x) - \rho\, y \right],

    :math:`\sigma(x) = 1 / (1 + e^{-x})` computed from :math:`e^{-|x|}`.  "mean" divides the sum
    by the number of elements (not by the weights), as PyTorch does.

    Parameters
    ----------
    weight : array_like, optional
        Element weights :math:`w` >= 0, broadcastable to ``pred``'s shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : array_like, optional
        Weights :math:`\rho` >= 0 of the positive targets, broadcastable to ``pred``'s shape
        (typically one per output on the last axis: (C,)).
    """

    name = "bce_with_logits"

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        self.weight = check.check_weights(weight, "weight", vector=False)
        self.reduction = check.check_choice(reduction, "reduction", _REDUCTIONS, ignore_case=False)
        self.pos_weight = check.check_weights(pos_weight, "pos_weight", vector=False)

    def _check_target(self, pred, target):
        target = super()._check_target(pred, target)
        for name in ("weight", "pos_weight"):
            arr = getattr(self, name)
            if arr is None:
                continue
            try:
                ok = np.broadcast_shapes(arr.shape, pred.shape) == pred.shape
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{name} of shape {arr.shape} must broadcast to pred's shape {pred.shape}")
        return target

    def _compute(self, pred, target):
        x, y = pred, target
        with np.errstate(under="ignore"):
            e = np.exp(-np.abs(x))  # in (0, 1]: no overflow
        softplus_neg = np.maximum(-x, 0) + np.log1p(e)  # log(1 + exp(-x))
        sigmoid = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(pred.dtype, copy=False)
        if self.pos_weight is None:
            values = (1.0 - y) * x + softplus_neg
            grad = sigmoid - y
        else:
            rho_y = self.pos_weight.astype(pred.dtype) * y
            log_weight = rho_y + 1.0 - y  # 1 + (rho - 1) y
            values = (1.0 - y) * x + log_weight * softplus_neg
            grad = log_weight * sigmoid - rho_y
        if self.weight is not None:
            w = self.weight.astype(pred.dtype)
            values = values * w
            grad = grad * w
        # the weights broadcast to pred's shape (checked), so values and grad have that shape
        grad = grad.astype(pred.dtype, copy=False)
        return _reduce(values.astype(pred.dtype, copy=False), grad, pred.size, self.reduction)

    def config(self):
        return {"weight": _weights_config(self.weight), "reduction": self.reduction,
                "pos_weight": _weights_config(self.pos_weight)}


# ---------------------------------------------------------------------------------- registry

#: Regression loss classes by name (float targets of the prediction's shape); the losses a
#: :class:`numrnn.forecast.Forecaster` can use.
LOSSES = {cls.name: cls for cls in (MSELoss, MAELoss, HuberLoss, GaussianNLLLoss)}

#: Classification loss classes by name.
CLASSIFICATION_LOSSES = {cls.name: cls for cls in (CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss)}


def get_loss(loss, **kwargs):
    """Return a loss object from a name or a loss.

    Parameters
    ----------
    loss : str or Loss
        A name from :data:`LOSSES` (``"mse"``, ``"mae"``, ``"huber"``, ``"gaussian"``) or
        :data:`CLASSIFICATION_LOSSES` (``"cross_entropy"``, ``"nll"``, ``"bce_with_logits"``);
        keyword arguments go to its constructor.  Or a :class:`Loss` instance, returned unchanged.
    """
    if isinstance(loss, Loss):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with a loss name")
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name or a Loss, got {type(loss).__name__}")
    known = {**LOSSES, **CLASSIFICATION_LOSSES}
    try:
        cls = known[loss.lower()]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(known)}, got {loss!r}") from None
    return cls(**kwargs)
