r"""Training loops: mini-batch fitting with early stopping, truncated BPTT, full-batch L-BFGS, and
a gradient checker.

All functions work on any *model* with the module interface of :mod:`numrnn.nn` (``params``,
``grads``, ``zero_grad``, ``__call__``, ``backward``, ``state_dict``, ``load_state_dict``), e.g. an
``nn.Sequential(numrnn.LSTM(...), nn.LastStep(), nn.Linear(...))``.  Inputs are time-major
``(T, B, F)``; targets have the batch on their first axis.

Any loss of :mod:`numrnn.losses` trains: regression losses with float targets, and
classification losses (:class:`~numrnn.losses.CrossEntropyLoss`, :class:`~numrnn.losses.NLLLoss`,
:class:`~numrnn.losses.BCEWithLogitsLoss`) with integer class targets, which are sliced into
batches and chunks as they are and never cast to float.  E.g. a classifier
``Sequential(GRU(...), nn.LastStep(), nn.Linear(H, C))`` with ``fit(..., target=labels (N,),
loss="cross_entropy")``, or a language model ``Sequential(nn.Embedding(V, E), LSTM(E, H),
nn.Linear(H, V))`` with ``tbptt(model, tokens[:-1], tokens[1:], k, loss="cross_entropy")``
(tokens (T, B) of int).  The loss must reduce to a number (``reduction`` "mean" or "sum").

* :func:`fit`: epochs of shuffled mini-batches with an optimiser from :mod:`numrnn.optim`,
  gradient clipping, a validation set with early stopping that restores the best weights, and
  a tqdm progress bar.
* :func:`tbptt`: one pass over a long sequence in chunks of ``k`` steps, carrying the state
  from chunk to chunk but no gradient across chunk borders.
* :func:`fit_lbfgs`: full-batch L-BFGS (``scipy.optimize.minimize(method="L-BFGS-B",
  jac=True)``) over a flat float64 view of every parameter.
* :func:`gradcheck`: compare a model's analytic gradients with central differences.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from numrnn import _validation as check
from numrnn._jit import compile_notice
from numrnn.losses import get_loss
from numrnn.optim import Optimizer, clip_grad_norm, get_optimizer

__all__ = [
    "make_closure",
    "flatten",
    "unflatten_into",
    "gradcheck",
    "GradcheckError",
    "fit",
    "tbptt",
    "fit_lbfgs",
    "limit_threads",
]


# ---------------------------------------------------------------------------------- helpers


def _training_loss(loss):
    """``get_loss(loss)``, which must reduce to a scalar (a training loop needs one number)."""
    loss = get_loss(loss)
    if getattr(loss, "reduction", "mean") not in ("mean", "sum"):
        raise ValueError(f"loss must reduce to a number for training (reduction 'mean' or 'sum'), got reduction {loss.reduction!r}")
    return loss


def _as_target(target):
    """An ndarray view of ``target`` with its own dtype (integer class targets stay integers)."""
    return target if isinstance(target, np.ndarray) else np.asarray(target)


class _Average:
    """The loss of many batches as the loss of one: for "mean" the sum of ``value * total_weight``
    over the sum of the total weights (so weights and ignored targets count as in one call);
    for "sum" the sum."""

    def __init__(self, reduction):
        self.mean = reduction == "mean"
        self.total = 0.0
        self.weight = 0.0

    def add(self, value, total_weight):
        self.total += value * total_weight if self.mean else value
        self.weight += total_weight

    def result(self):
        if not self.mean:
            return self.total
        return self.total / self.weight if self.weight else math.nan


def _learn(model, out, target, loss, optimizer, clip_norm, average):
    """Backpropagate ``loss(out, target)``, clip, and take one optimiser step; add the loss to
    ``average``.  Nothing happens when no target counts (total weight 0): nothing to learn from."""
    value, grad, weight = loss.evaluate(out, target)
    if weight == 0:
        return
    model.backward(grad)
    if clip_norm is not None:
        clip_grad_norm(model.grads, clip_norm)
    optimizer.step(model.params, model.grads)
    average.add(value, weight)


def make_closure(model, loss, x, target):
    """Return ``closure() -> (value, grads)`` evaluating ``loss(model(x), target)`` and its gradients.

    The closure zeroes the model's gradients, runs forward and backward, and returns the loss and
    *copies* of the gradients (a dict keyed like ``model.params``).

    Parameters
    ----------
    model : module
    loss : str or numrnn.losses.Loss
    x : array_like
        Model input.
    target : array_like
        Target for the model output.
    """
    check.check_module(model)
    check.check_host_arrays(model.grads, "make_closure")
    loss = _training_loss(loss)
    target = _as_target(target)

    def closure():
        model.zero_grad()
        out = model(x)
        value, grad = loss(out, target)
        model.backward(grad)
        return value, {k: g.copy() for k, g in model.grads.items()}

    return closure


def flatten(params):
    """Concatenate every array of ``params`` (in dict order) into one float64 vector."""
    if not params:
        return np.zeros(0)
    check.check_host_arrays(params, "flatten")
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in params.values()])


def unflatten_into(params, vector):
    """Write ``vector`` (as made by :func:`flatten`) back into the arrays of ``params`` in place."""
    check.check_host_arrays(params, "unflatten_into")
    vector = np.asarray(vector)
    total = sum(v.size for v in params.values())
    if vector.ndim != 1 or vector.size != total:
        raise ValueError(f"vector must have shape ({total},) (all parameters), got {vector.shape}")
    offset = 0
    for v in params.values():
        v[...] = vector[offset : offset + v.size].reshape(v.shape)
        offset += v.size


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when analytic and numerical gradients disagree."""


def gradcheck(closure, params, eps=1e-6, rtol=1e-5, atol=1e-8, max_per_param=None, seed=0, raise_exception=True):
    r"""Check analytic gradients against central differences.

    For each checked entry :math:`\theta_j`, the numerical derivative is
    :math:`(f(\theta + \epsilon e_j) - f(\theta - \epsilon e_j)) / 2\epsilon`; it must match the
    analytic one within ``atol + rtol * |numerical|``.  Use float64 models: float32 differences
    are too noisy for tight tolerances.

    Parameters
    ----------
    closure : callable
        ``closure() -> (value, grads)`` computed at the current parameters, e.g. from
        :func:`make_closure`.
    params : dict of str -> ndarray
        The parameters the closure reads (perturbed in place, restored afterwards).
    eps : float, default 1e-6
        Step of the central difference.
    rtol, atol : float
        Tolerances.
    max_per_param : int, optional
        Check at most this many randomly chosen entries per parameter (all when None).
    seed : int or None, default 0
        Seed for choosing the entries (an integer in [0, 2**63); None draws one).
    raise_exception : bool, default True
        Raise :class:`GradcheckError` on a mismatch; otherwise return the report.

    Returns
    -------
    dict of str -> float
        The largest absolute difference per parameter (when nothing is raised).
    """
    if not callable(closure):
        raise TypeError(f"closure must be callable, got {type(closure).__name__}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    check.check_host_arrays(params, "gradcheck")
    _, analytic = closure()
    analytic = {k: np.asarray(v, dtype=np.float64).copy() for k, v in analytic.items()}
    if set(analytic) != set(params):
        raise ValueError(f"closure's grads must have the keys of params {sorted(params)}, got {sorted(analytic)}")
    rng = np.random.default_rng(check.check_seed(seed))
    report, failures = {}, []
    for name, p in params.items():
        flat = p.reshape(-1)  # a view for contiguous arrays
        if not np.shares_memory(flat, p):
            raise ValueError(f"params[{name!r}] must be contiguous to be perturbed in place")
        idx = np.arange(flat.size)
        if max_per_param is not None and flat.size > max_per_param:
            idx = np.sort(rng.choice(flat.size, size=max_per_param, replace=False))
        worst = 0.0
        for j in idx:
            original = flat[j].copy()
            try:
                flat[j] = original + eps
                plus = closure()[0]
                flat[j] = original - eps
                minus = closure()[0]
            finally:
                flat[j] = original
            numerical = (plus - minus) / (2.0 * eps)
            exact = analytic[name].reshape(-1)[j]
            diff = abs(numerical - exact)
            worst = max(worst, diff)
            if not diff <= atol + rtol * abs(numerical):
                failures.append(f"{name}[{np.unravel_index(j, p.shape)}]: analytic {exact:.6g}, numerical {numerical:.6g}")
        report[name] = worst
    if failures and raise_exception:
        shown = "\n  ".join(failures[:10])
        more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
        raise GradcheckError(f"{len(failures)} gradient entries disagree:\n  {shown}{more}")
    return report


@contextlib.contextmanager
def limit_threads(limit):
    """Limit BLAS and Numba threads to ``limit`` inside the block (no-op when ``limit`` is None).

    Small recurrent models run thousands of tiny kernels; on a busy machine the thread pools then
    cost more than the arithmetic (OpenBLAS on small products, Numba's parallel kernels in a whole
    Forecaster fit).  BLAS is limited
    through ``threadpoolctl`` when it is installed; Numba through ``numba.set_num_threads``
    (restored afterwards).
    """
    if limit is None:
        yield
        return
    import numba

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional helper
        blas = contextlib.nullcontext()
    else:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls: load it so it is limited too)

        blas = threadpool_limits(limits=limit, user_api="blas")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(limit, numba.config.NUMBA_NUM_THREADS))
    try:
        with blas:
            yield
    finally:
        numba.set_num_threads(previous)


def _batch_count(x, target, batch_axis):
    n = np.shape(x)[batch_axis]
    if np.shape(target)[0] != n:
        raise ValueError(f"target must have {n} samples on its first axis (like x's axis {batch_axis}), got {np.shape(target)[0]}")
    return n


# ---------------------------------------------------------------------------------- loops


def fit(
    model,
    x,
    target,
    loss="mse",
    optimizer="adam",
    epochs=100,
    batch_size=32,
    clip_norm=1.0,
    validation=None,
    patience=None,
    seed=None,
    progress=False,
    desc="fit",
):
    """Train ``model`` with mini-batches; optionally stop early on a validation set.

    Parameters
    ----------
    model : module
        E.g. ``nn.Sequential(numrnn.GRU(...), nn.LastStep(), nn.Linear(...))``.
    x : ndarray, shape (T, N, F)
        Time-major inputs of N samples.
    target : ndarray, shape (N, ...)
        Targets of the model output (float values, or integer class indices for a
        classification loss; their dtype is kept).
    loss : str or Loss, default "mse"
        Reducing by "mean" or "sum".
    optimizer : str or Optimizer, default "adam"
        A name uses the optimiser's default hyperparameters; pass an instance to set them.
    epochs : int, default 100
    batch_size : int, default 32
        Samples per step (the last batch of an epoch may be smaller).
    clip_norm : float or None, default 1.0
        Clip the global gradient norm before each step.
    validation : (x_val, target_val), optional
        Evaluated after every epoch (in eval mode).  The weights with the lowest validation loss
        are restored at the end.
    patience : int, optional
        Stop after this many epochs without a validation improvement.
    seed : int, optional
        Seed of the shuffling: an integer in [0, 2**63); None draws one.
    progress : bool, default False
        Show a tqdm bar with epoch, train and validation loss.
    desc : str
        Label of the progress bar.

    Returns
    -------
    dict
        ``{"train_loss": [...], "val_loss": [...], "best_epoch": int, "best_val_loss": float,
        "epochs_run": int}``.  An epoch's ``train_loss`` is its batches' losses combined as if the
        epoch were one batch: for a "mean" loss the mean over every (counted) target, e.g. over the
        non-ignored targets weighted by class for a cross-entropy, and for a "sum" loss the sum.

    Raises
    ------
    ValueError
        If no target of the training set counts (all equal to ``ignore_index``, or of classes
        weighted 0).
    FloatingPointError
        If the training loss becomes NaN or inf.

    Notes
    -----
    A batch whose targets are all ignored (total weight 0) makes no optimiser step.
    """
    check.check_module(model)
    loss, target, optimizer = _training_loss(loss), _as_target(target), get_optimizer(optimizer)
    epochs, batch_size, clip_norm, patience, n, validation = _fit_arguments(
        x, target, epochs, batch_size, clip_norm, patience, validation
    )
    rng = np.random.default_rng(check.check_seed(seed))
    history = {"train_loss": [], "val_loss": [], "best_epoch": -1, "best_val_loss": math.inf, "epochs_run": 0}
    best_state = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=desc, leave=False)
    notice = compile_notice(bar)  # "compiling" on the bar while kernels compile, and no ETA from it
    try:
        waited = 0
        for epoch in range(epochs):
            train_loss = _train_epoch(model, x, target, loss, optimizer, rng.permutation(n), batch_size, clip_norm)
            history["train_loss"].append(train_loss)
            history["epochs_run"] = epoch + 1
            postfix = {"train": f"{train_loss:.4g}"}
            if validation is not None:
                model.eval()
                val_loss = loss(model(validation[0]), validation[1])[0]
                history["val_loss"].append(val_loss)
                postfix["val"] = f"{val_loss:.4g}"
                if val_loss < history["best_val_loss"]:
                    history["best_val_loss"], history["best_epoch"] = val_loss, epoch
                    best_state = model.state_dict()
                    waited = 0
                else:
                    waited += 1
            if bar is not None:
                bar.set_postfix(postfix, refresh=False)
                notice.update(1)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"the training loss became {train_loss} at epoch {epoch}; lower the learning rate")
            if patience is not None and validation is not None and waited >= patience:
                break
    finally:
        notice.close()
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        history["best_epoch"] = history["epochs_run"] - 1
    model.eval()
    return history


def _fit_arguments(x, target, epochs, batch_size, clip_norm, patience, validation):
    """:func:`fit`'s arguments after the model, the loss, the target and the optimiser, checked.

    Returns
    -------
    (epochs, batch_size, clip_norm, patience, n, validation)
        Validated, with ``n`` the number of samples and ``validation`` as
        ``(x_val, target_val as an ndarray)`` or None.
    """
    epochs = check.check_int(epochs, "epochs", 1)
    batch_size = check.check_int(batch_size, "batch_size", 1)
    clip_norm = check.check_positive_float(clip_norm, "clip_norm", allow_none=True)
    patience = check.check_int(patience, "patience", 1, allow_none=True)
    n = _batch_count(x, target, 1)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a pair (x_val, target_val) or None")
        validation = (validation[0], _as_target(validation[1]))
        _batch_count(validation[0], validation[1], 1)
    return epochs, batch_size, clip_norm, patience, n, validation


def _train_epoch(model, x, target, loss, optimizer, order, batch_size, clip_norm):
    """One epoch of mini-batches in train mode, the samples taken in ``order``; returns its loss
    (the batches' losses combined as if the epoch were one batch)."""
    model.train()
    average = _Average(loss.reduction)
    for start in range(0, order.size, batch_size):
        idx = order[start : start + batch_size]
        model.zero_grad()
        _learn(model, model(x[:, idx]), target[idx], loss, optimizer, clip_norm, average)
    if average.weight == 0:
        raise ValueError(
            f"target has nothing to train on: every target is ignored (ignore_index="
            f"{getattr(loss, 'ignore_index', None)}) or has class weight 0"
        )
    return average.result()


def tbptt(model, x, target, k, loss="mse", optimizer=None, clip_norm=None, states=None):
    """One pass of truncated backpropagation through time over a long sequence.

    The sequence is cut into chunks of ``k`` steps.  For each chunk the model runs from the
    state the previous chunk ended in, the loss of its outputs is backpropagated *within the
    chunk only* (no gradient crosses a chunk border) and the optimiser takes a step.

    Parameters
    ----------
    model : nn.Sequential
        A stack whose output is per timestep, e.g. ``Sequential(GRU(...), Linear(...))``
        (time-major: output (T, B, F)).
    x : ndarray, shape (T, B, I)
    target : ndarray, shape (T, B, ...)
        Target of the model output at every step: float values, or integer class indices
        (T, B) for a classification loss on outputs (T, B, C), kept integer.
    k : int
        Chunk length.
    loss : str or Loss, default "mse"
        Reducing by "mean" or "sum".
    optimizer : Optimizer
        Required; updates ``model.params`` after each chunk.
    clip_norm : float, optional
        Clip the global gradient norm before each step.
    states : list, optional
        Initial states (as ``model.states``); None for zeros.

    Returns
    -------
    mean_loss : float
        The chunks' losses combined as if the sequence were one batch: for a "mean" loss
        the mean over every counted target (chunks weighted by their total weight, i.e. by
        their length for a regression loss), NaN if every target is ignored; for a "sum" loss
        the sum.
    states : list
        The final states, to pass to the next call.

    Notes
    -----
    A chunk whose targets are all ignored makes no optimiser step; its state is still carried.
    """
    check.check_module(model)
    if not hasattr(model, "states"):
        raise TypeError("model must be an nn.Sequential (it carries states across chunks)")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer instance, got {type(optimizer).__name__}")
    loss = _training_loss(loss)
    k = check.check_int(k, "k", 1)
    clip_norm = check.check_positive_float(clip_norm, "clip_norm", allow_none=True)
    target = _as_target(target)
    steps = np.shape(x)[0]
    if np.shape(target)[:1] != (steps,):
        raise ValueError(f"target must have {steps} timesteps like x, got shape {np.shape(target)}")
    average = _Average(loss.reduction)
    for start in range(0, steps, k):
        model.zero_grad()
        out = model(x[start : start + k], states=states)
        states = model.states  # carried even when every target of the chunk is ignored
        _learn(model, out, target[start : start + k], loss, optimizer, clip_norm, average)
    return average.result(), states


def fit_lbfgs(model, x, target, loss="mse", maxiter=500, tol=1e-9, validation=None, patience=None, callback=None):
    """Full-batch training with SciPy's L-BFGS over a flat float64 view of all parameters.

    Parameters
    ----------
    model : module
    x, target : arrays
        The whole training set (one batch).
    loss : str or Loss, default "mse"
    maxiter : int, default 500
        Most L-BFGS iterations.
    tol : float, default 1e-9
        ``ftol`` and ``gtol`` of L-BFGS-B.
    validation : (x_val, target_val), optional
        Evaluated after every iteration; the best weights are restored at the end.
    patience : int, optional
        Stop after this many iterations without a validation improvement.
    callback : callable, optional
        ``callback(iteration, train_loss)`` after every iteration.

    Returns
    -------
    scipy.optimize.OptimizeResult
        With ``best_val_loss`` and ``best_iteration`` added when ``validation`` was given.
    """
    from scipy.optimize import OptimizeResult, minimize

    check.check_module(model)
    loss = _training_loss(loss)
    target = _as_target(target)
    if validation is not None:
        validation = (validation[0], _as_target(validation[1]))
    maxiter = check.check_int(maxiter, "maxiter", 1)
    patience = check.check_int(patience, "patience", 1, allow_none=True)
    tol = float(tol)
    params = model.params
    state = {"iter": 0, "best": math.inf, "best_iter": -1, "best_state": None, "waited": 0, "last": math.nan}

    def fun(theta):
        unflatten_into(params, theta)
        model.zero_grad()
        out = model(x)
        value, grad = loss(out, target)
        model.backward(grad)
        state["last"] = value
        return value, flatten(model.grads)

    class _Stop(Exception):
        pass

    def on_iteration(theta):
        state["iter"] += 1
        if callback is not None:
            callback(state["iter"], state["last"])
        if validation is not None:
            unflatten_into(params, theta)
            model.eval()
            val = loss(model(validation[0]), validation[1])[0]
            model.train()
            if val < state["best"]:
                state.update(best=val, best_iter=state["iter"], best_state=model.state_dict(), waited=0)
            else:
                state["waited"] += 1
                if patience is not None and state["waited"] >= patience:
                    state["stopped_at"] = np.array(theta, copy=True)
                    raise _Stop

    model.train()
    try:
        result = minimize(
            fun,
            flatten(params),
            jac=True,
            method="L-BFGS-B",
            callback=on_iteration,
            options={"maxiter": maxiter, "ftol": tol, "gtol": tol},
        )
    except _Stop:
        result = OptimizeResult(
            x=state["stopped_at"], fun=state["last"], success=True, status=99, nit=state["iter"],
            message="stopped early: no validation improvement for `patience` iterations",
        )
    unflatten_into(params, result.x)
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
        result.best_val_loss = state["best"]
        result.best_iteration = state["best_iter"]
    model.eval()
    return result
