"""Training of the Forecaster's ensemble and the checks that nothing non-finite comes out of it.

Nothing non-finite is returned silently: a fit whose loss or weights become NaN or inf, or whose
in-sample forecasts are not finite, raises :class:`NonFiniteForecastError` (naming ``lr`` when the
optimiser's step size is the likely cause); so does a forecast that is not finite.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn._jit import compile_notice
from numrnn.backends import host_copy
from numrnn.losses import get_loss
from numrnn.optim import get_optimizer
from numrnn.train import fit as _fit_loop
from numrnn.train import fit_lbfgs, limit_threads

__all__ = ["NonFiniteForecastError", "check_forecasts", "check_member", "fit_members", "lr_hint", "member_outputs",
           "mixture_std"]


class NonFiniteForecastError(RuntimeError, FloatingPointError):
    """Training diverged (a NaN/inf loss or weight) or a forecast is not finite.

    Raised by :meth:`Forecaster.fit` (the forecaster is then left as it was) and by
    :meth:`Forecaster.predict`.  The message says what became non-finite and which argument to
    change (usually a lower ``lr`` or a ``clip_norm``).  It is a :class:`RuntimeError` and, like
    the :class:`FloatingPointError` that :func:`numrnn.train.fit` raises for a non-finite training
    loss, a :class:`FloatingPointError`, so either ``except`` clause catches it.
    """


# NumPy floating-point warnings are silenced where non-finite values are detected explicitly.
_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")

# Forecasts within this many (scaled) standard deviations of the last value are "in range": if
# such a forecast is still not finite, the data, not a diverged fit, is the cause.
_SANE_OUTPUT = 1e3


def lr_hint(f):
    """What to change when training diverged, naming the arguments with their values."""
    if f.optimizer == "lbfgs":
        return (
            "optimizer='lbfgs' (which does not use lr) diverged; expected a finite fit, so try "
            "optimizer='adam' or fewer epochs"
        )
    hint = (
        f"lower lr (expected a rate small enough for the loss to stay finite, got lr={f.lr:g}; "
        "the default is 0.01)"
    )
    if f.clip_norm is None:
        hint += " or set clip_norm (got None; the default is 1.0)"
    return hint

def check_member(f, net, hist, j):
    """Raise :class:`NonFiniteForecastError` when member ``j``'s loss or weights are not finite.

    Parameters
    ----------
    f : Forecaster
        Whose settings (ensemble, optimizer, lr, clip_norm) the message names.
    net : WindowNet
        The trained member.
    hist : dict
        Its training history (``train_loss``, ``epochs_run``).
    j : int
        Its index in the ensemble.
    """
    where = f"member {j + 1}/{f.ensemble}"
    losses = [float(v) for v in hist["train_loss"]]
    if losses and not math.isfinite(losses[-1]):
        raise NonFiniteForecastError(
            f"training diverged: the training loss of {where} became {losses[-1]} after "
            f"{hist['epochs_run']} epoch(s); {lr_hint(f)}"
        )
    bad = [name for name, value in net.params.items() if not np.isfinite(host_copy(value)).all()]
    if bad:
        raise NonFiniteForecastError(
            f"training diverged: the weights {bad} of {where} are not finite after "
            f"{hist['epochs_run']} epoch(s); {lr_hint(f)}"
        )


def member_outputs(members, x):
    """Raw outputs of every member (eval mode, float64, shape (N, outputs)) for windows ``x``."""
    outs = []
    for net in members:
        net.eval()
        with limit_threads(1), np.errstate(**_QUIET):
            outs.append(np.asarray(net(x), dtype=np.float64))
    return outs


def check_forecasts(f, members, x, level, scaler, k, what, outs=None, forecast=None):
    """Raise :class:`NonFiniteForecastError` unless every output and forecast is finite.

    Parameters
    ----------
    f : Forecaster
    members : list of WindowNet
        The ensemble.
    x : ndarray, shape (lookback + horizon, N, k + m)
        Windows, as made by ``_windows``.
    level : ndarray, shape (N, k)
        Scaled last input value of each window.
    scaler : ColumnScaler
        The fitted scaler.
    k : int
        Number of target columns.
    what : str
        What is checked, for the message ("the in-sample forecasts", "the forecasts").
    outs, forecast : optional
        The members' raw outputs and the inverted forecasts, when already computed.

    Raises
    ------
    NonFiniteForecastError
        Naming ``lr`` when the network's outputs are non-finite or beyond ``_SANE_OUTPUT``
        standard deviations (a diverged fit), else blaming the series' range.
    """
    hk = f.horizon * k
    if outs is None:
        outs = member_outputs(members, x)
    with np.errstate(**_QUIET):
        mean = np.mean([o[:, :hk].reshape(-1, f.horizon, k) for o in outs], axis=0)
    if forecast is None:
        forecast = scaler.inverse_transform(mean + level[:, None, :])
    if all(np.isfinite(o).all() for o in outs) and np.isfinite(forecast).all():
        return
    finite = np.isfinite(mean)
    reach = float(np.max(np.abs(mean[finite]))) if finite.any() else math.inf
    if not finite.all() or not all(np.isfinite(o).all() for o in outs) or reach > _SANE_OUTPUT:
        raise NonFiniteForecastError(
            f"training diverged: {what} are not finite (the network's outputs reach {reach:.3g} "
            f"standard deviations of the training data from the last value, expected at most "
            f"about {_SANE_OUTPUT:g}); {lr_hint(f)}"
        )
    raise NonFiniteForecastError(
        f"{what} are not finite although the network's outputs are in range (at most {reach:.3g} "
        "standard deviations from the last value): the series is too close to the float64 limit "
        "(1.8e308) for its forecasts to be represented; rescale y"
    )


def fit_members(f, x_tr, t_tr, validation, k, m, seed, progress):
    """Train the ``ensemble`` members (seeds spawned from ``seed``) and check each one.

    Returns
    -------
    dict
        ``members``, ``optimizers`` (None for L-BFGS) and ``history``.

    Raises
    ------
    NonFiniteForecastError
        If a member's loss, outputs, gradients or weights become NaN or inf.
    """
    loss = get_loss(f.loss)
    members, optimizers, history = [], [], []
    children = np.random.SeedSequence(seed).spawn(f.ensemble)
    for j, child in enumerate(children):
        init_rnn, init_head, shuffle = (int(s) for s in child.generate_state(3))
        net = f._make_net(k, m, (init_rnn, init_head))
        desc = f"member {j + 1}/{f.ensemble}"
        try:
            if f.optimizer == "lbfgs":
                bar = None
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=f.epochs, desc=desc, leave=False)
                notice = compile_notice(bar)  # "compiling" on the bar while kernels compile
                try:
                    result = fit_lbfgs(
                        net, x_tr, t_tr, loss=loss, maxiter=f.epochs, validation=validation,
                        patience=f.patience if validation is not None else None,
                        callback=(lambda it, value, bar=bar: (bar.set_postfix(train=f"{value:.4g}", refresh=False), notice.update(1)))
                        if bar is not None else None,
                    )
                finally:
                    notice.close()
                    if bar is not None:
                        bar.close()
                opt = None
                hist = {"train_loss": [float(result.fun)], "val_loss": [], "epochs_run": int(result.nit),
                        "best_epoch": int(getattr(result, "best_iteration", result.nit)),
                        "best_val_loss": float(getattr(result, "best_val_loss", math.inf))}
            else:
                opt = get_optimizer(f.optimizer, lr=f.lr)
                hist = _fit_loop(
                    net, x_tr, t_tr, loss=loss, optimizer=opt, epochs=f.epochs, batch_size=f.batch_size,
                    clip_norm=f.clip_norm, validation=validation, patience=f.patience, seed=shuffle,
                    progress=progress, desc=desc,
                )
        except (FloatingPointError, ValueError) as exc:
            # The windows were checked finite above, so a non-finite value met inside the training
            # loop (numrnn.train.fit's FloatingPointError for the loss; the layers' and optimisers'
            # "contains NaN or inf" ValueError for outputs, gradients and updates) means divergence.
            if isinstance(exc, ValueError) and "NaN or inf" not in str(exc):
                raise
            raise NonFiniteForecastError(
                f"training diverged in member {j + 1}/{f.ensemble} ({exc}); {lr_hint(f)}"
            ) from exc
        check_member(f, net, hist, j)
        members.append(net)
        optimizers.append(opt)
        history.append(hist)
    return {"members": members, "optimizers": optimizers, "history": history}


def mixture_std(outs, horizon, k, scaler, forecast):
    """The predictive standard deviation of an ensemble of Gaussian heads, in the original units.

    Parameters
    ----------
    outs : list of ndarray, shape (1, 2 * horizon * k)
        Each member's raw output for one window: ``horizon * k`` means, then as many log-variances.
    horizon, k : int
    scaler : ColumnScaler
        The fitted scaler (a log column gets the delta-method ``forecast * sigma_log``).
    forecast : ndarray, shape (horizon, k)
        The point forecast in the original units.

    Returns
    -------
    ndarray, shape (horizon, k)
        The square root of the mixture's variance, ``mean(var_j + mu_j**2) - mean(mu_j)**2``.

    Raises
    ------
    NonFiniteForecastError
        If it overflows float64.
    """
    hk = horizon * k
    means = [o[0, :hk].reshape(horizon, k) for o in outs]
    variances = [np.exp(np.clip(o[0, hk:], -30.0, 30.0)).reshape(horizon, k) for o in outs]
    mean = np.mean(means, axis=0)
    with np.errstate(**_QUIET):
        var = np.mean([v + mu**2 for v, mu in zip(variances, means)], axis=0) - mean**2
    std = scaler.inverse_std(np.sqrt(np.maximum(var, 0.0)), forecast)
    if not np.isfinite(std).all():
        raise NonFiniteForecastError(
            f"the forecast's standard deviation is not finite ({std.tolist()}) although the forecast is: "
            "the predictive spread overflows float64; rescale y"
        )
    return std
