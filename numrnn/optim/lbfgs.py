r"""L-BFGS as ``torch.optim.LBFGS``: the iterations, the strong-Wolfe line search and the state."""

from __future__ import annotations

import math

import numpy as np

from numrnn import _validation as check
from numrnn.backends import host_copy, is_device_array
from numrnn.optim.optimizers import Optimizer

__all__ = ["LBFGS"]


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


def _largest(v):
    """``max |v|``, the norm of every stopping rule."""
    return np.max(np.abs(v))


class _FlatProblem:
    """The parameters of one :meth:`LBFGS.step` seen as one flat vector :math:`x`.

    Parameters
    ----------
    params : dict of str -> ndarray
        The parameters, moved in place.
    grads : dict of str -> ndarray or None
        Where the closure leaves the gradients (None when it returns them).
    closure : callable
        As in :meth:`LBFGS.step`.
    layout : list of (str, tuple)
        The keys and shapes in flat order.
    """

    def __init__(self, params, grads, closure, layout):
        self.params, self.grads, self.closure = params, grads, closure
        self.keys = [key for key, _ in layout]
        self.dtype = np.result_type(*(params[key].dtype for key in self.keys))
        self.offsets = np.cumsum([0] + [params[key].size for key in self.keys])
        self.evaluations = 0  # closure calls in this step, for messages

    def _spans(self):
        """``(key, start, stop)`` of each parameter in the flat vector."""
        return zip(self.keys, self.offsets[:-1], self.offsets[1:])

    def _loss(self, out, where):
        """The closure's loss as a Python float (a finite real number)."""
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
        return value

    def evaluate(self):
        """Call the closure: (loss as a Python float, flat gradient of the parameters' dtype)."""
        self.evaluations += 1
        out = self.closure()
        where = f"closure evaluation {self.evaluations} of this step"
        source = self.grads
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            out, source = out
        value = self._loss(out, where)
        if source is None:
            raise TypeError("closure returned a bare loss but grads is None: pass the dict the closure fills")
        check.check_same_keys(self.params, source, "the gradients")
        flat = np.empty(self.offsets[-1], dtype=self.dtype)
        for key, start, stop in self._spans():
            g = source[key]
            if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
                raise TypeError(f"grads[{key!r}] must be a real ndarray, got {type(g).__name__} at {where}")
            if g.shape != self.params[key].shape:
                raise ValueError(f"grads[{key!r}] must have shape {self.params[key].shape} like params, "
                                 f"got {g.shape} at {where}")
            flat[start:stop] = g.reshape(-1)
        if not np.all(np.isfinite(flat)):
            bad = next(key for key, a, b in self._spans() if not np.all(np.isfinite(flat[a:b])))
            raise ValueError(f"grads[{bad!r}] contains NaN or inf at {where}")
        return value, flat

    def move(self, t, d):
        """``x <- x + t d``, in place."""
        for key, start, stop in self._spans():
            p = self.params[key]
            p += t * d[start:stop].reshape(p.shape)

    def along(self, d):
        """``evaluate_at(t) -> (loss, flat_grad)`` at ``x + t d``, leaving the parameters at ``x``
        (for the line search)."""
        x_start = {key: self.params[key].copy() for key in self.keys}

        def evaluate_at(step):
            self.move(step, d)
            try:
                return self.evaluate()
            finally:
                for key in self.keys:
                    self.params[key][...] = x_start[key]

        return evaluate_at


def _remember(y, s, old_dirs, old_stps, ro, h_diag, history_size):
    r"""Append the pair :math:`(y, s)` to the history (in place) when :math:`y^T s > 10^{-10}`,
    dropping the oldest beyond ``history_size``; return the new :math:`H_0` scale
    :math:`y^T s / y^T y` (``h_diag`` when the pair is not kept)."""
    ys = np.dot(y, s)
    if ys > 1e-10:  # keep the pair (curvature condition)
        if len(old_dirs) == history_size:
            del old_dirs[0], old_stps[0], ro[0]
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        h_diag = ys / np.dot(y, y)
    return h_diag


def _two_loop_direction(flat_grad, old_dirs, old_stps, ro, h_diag):
    r""":math:`d = -H g` by the two-loop recursion over the history, with :math:`H_0 = h I`."""
    q = -flat_grad
    alpha = [None] * len(old_dirs)
    for i in reversed(range(len(old_dirs))):
        alpha[i] = np.dot(old_stps[i], q) * ro[i]
        q = q - alpha[i] * old_dirs[i]
    d = q * h_diag
    for i in range(len(old_dirs)):
        beta = np.dot(old_dirs[i], d) * ro[i]
        d = d + (alpha[i] - beta) * old_stps[i]
    return d


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
        lr = check.check_float(lr, "lr", low=0.0, low_open=True)
        max_iter = check.check_int(max_iter, "max_iter", 1)
        max_eval = max_iter * 5 // 4 if max_eval is None else check.check_int(max_eval, "max_eval", 1)
        tolerance_grad = check.check_float(tolerance_grad, "tolerance_grad", low=0.0)
        tolerance_change = check.check_float(tolerance_change, "tolerance_change", low=0.0)
        history_size = check.check_int(history_size, "history_size", 1)
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
            check.check_host_param(key, p)
            if not np.all(np.isfinite(p)):
                raise ValueError(f"params[{key!r}] contains NaN or inf")
        if grads is not None:
            if not isinstance(grads, dict):
                raise TypeError(f"grads must be a dict of name -> ndarray or None, got {type(grads).__name__}")
            check.check_same_keys(params, grads, "grads")
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

    _history = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")

    def _iterate(self, params, grads, closure, layout):
        """The iterations of one step; returns (first loss, new state).  Leaves ``self.state`` alone."""
        problem = _FlatProblem(params, grads, closure, layout)
        old = self.state
        state = {"func_evals": old.get("func_evals", 0), "n_iter": old.get("n_iter", 0), "layout": layout}
        state.update({name: old[name] for name in self._history if name in old})

        loss, flat_grad = problem.evaluate()
        first_loss = loss
        current_evals = 1
        state["func_evals"] += 1
        if _largest(flat_grad) <= self.tolerance_grad:
            return first_loss, state

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps = list(state.get("old_dirs", [])), list(state.get("old_stps", []))
        ro, h_diag = list(state.get("ro", [])), state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1
            else:
                h_diag = _remember(flat_grad - prev_flat_grad, d * t, old_dirs, old_stps, ro, h_diag,
                                   self.history_size)
                d = _two_loop_direction(flat_grad, old_dirs, old_stps, ro, h_diag)
            prev_flat_grad = flat_grad
            prev_loss = loss

            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.sum(np.abs(flat_grad))) * self.lr
            else:
                t = self.lr
            gtd = np.dot(flat_grad, d)
            if gtd > -self.tolerance_change:  # not a descent direction (to tolerance)
                break

            loss, flat_grad, t, evals, converged = self._advance(
                problem, loss, flat_grad, t, d, gtd, last=n_iter == self.max_iter,
                budget=self.max_eval - current_evals,
            )
            current_evals += evals
            state["func_evals"] += evals

            if n_iter == self.max_iter or current_evals >= self.max_eval or converged:
                break
            if _largest(d * t) <= self.tolerance_change or abs(loss - prev_loss) < self.tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return first_loss, state

    def _advance(self, problem, loss, flat_grad, t, d, gtd, last, budget):
        """Move the parameters along ``d``: by the line search, or by ``t`` and evaluate there.

        Returns
        -------
        (loss, flat_grad, t, evaluations, converged)
            At the new point (without line search and on the ``last`` iteration the point is not
            evaluated: the next step does that, and loss and gradient are those passed in).
        """
        if self.line_search_fn == "strong_wolfe":
            loss, flat_grad, t, evaluations = _strong_wolfe(problem.along(d), t, d, loss, flat_grad, gtd,
                                                            max_ls=budget)
            problem.move(t, d)
            return loss, flat_grad, t, evaluations, _largest(flat_grad) <= self.tolerance_grad
        problem.move(t, d)
        if last:
            return loss, flat_grad, t, 0, False
        loss, flat_grad = problem.evaluate()
        return loss, flat_grad, t, 1, _largest(flat_grad) <= self.tolerance_grad

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
        new, steps = self._check_state_dict(state_dict)
        src = state_dict["state"]
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
                    scalars[name] = check.check_float(src[name], f"{label}[{name!r}]")
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
