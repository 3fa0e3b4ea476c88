r"""Multi-step time-series forecasting with a recurrent encoder and a direct (MIMO) head.

>>> from numrnn.datasets import load_airline
>>> from numrnn.forecast import Forecaster
>>> y = load_airline()
>>> f = Forecaster(horizon=12, seed=0).fit(y[:-12], progress=False)   # doctest: +SKIP
>>> f.predict(y[:-12]).shape                                            # doctest: +SKIP
(12,)

How a :class:`Forecaster` turns a series into training data (all of it fitted on the part of the
series before the validation tail, nothing on the future):

1. **Transform.**  ``transform="auto"`` takes the log of every column that is strictly positive
   (multiplicative trend and season become additive) and leaves the others as they are.
2. **Scale.**  Each column is divided by the standard deviation of its transformed values
   (by its largest magnitude when it is constant).  Location and scale are computed after
   dividing by a power of two near the column's largest magnitude, so they neither overflow nor
   underflow: a series multiplied by 1e200 or 1e-200 gets forecasts multiplied by the same factor.
3. **Windows.**  Every stretch of ``lookback`` values is an input, the ``horizon`` values after it
   the target.  Both are taken *relative to the last input value* (the level), so the network
   learns shapes and changes, not absolute levels, and extrapolates trends.
4. **Model.**  An LSTM/GRU/RNN reads the window; its last hidden state goes through one
   :class:`numrnn.nn.Linear` head that emits all ``horizon`` steps at once (direct multi-step, no
   feedback of its own errors).  Known covariates (``exog``) enter the recurrent layer alongside
   the series and, for the forecast steps, the head.
5. **Training.**  Adam with gradient-norm clipping on shuffled mini-batches; the last
   ``validation`` windows are held out, training stops when their loss has not improved for
   ``patience`` epochs, and the best weights are restored.  ``ensemble`` members with different
   seeds are trained and their forecasts averaged, which makes results far less seed-dependent.

The forecast undoes steps 3, 2 and 1.  With a log transform the point forecast is the median of
the predictive distribution in the original units.

Nothing non-finite is returned silently: a fit whose loss or weights become NaN or inf, or whose
in-sample forecasts are not finite, raises :class:`NonFiniteForecastError` (naming ``lr`` when the
optimiser's step size is the likely cause) and leaves the forecaster as it was; so does a
forecast from :meth:`Forecaster.predict` that is not finite.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from numrnn import _validation as check
from numrnn._jit import compile_notice
from numrnn import io as nio
from numrnn import metrics as nmetrics
from numrnn import nn
from numrnn.backends import host_copy
from numrnn.losses import LOSSES, get_loss
from numrnn.optim import OPTIMIZERS, get_optimizer
from numrnn.train import fit as _fit_loop
from numrnn.train import limit_threads, fit_lbfgs

__all__ = ["Forecaster", "GlobalForecaster", "NonFiniteForecastError", "backtest"]

_CELLS = ("lstm", "gru", "rnn")
_TRANSFORMS = ("auto", "log", "none")


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


def _safe_location_scale(a):
    """Column means, standard deviations and largest magnitudes, without overflow or underflow.

    Parameters
    ----------
    a : ndarray, shape (n, k)
        Finite float64 values.

    Returns
    -------
    mean, std, maxabs : ndarray, shape (k,)
        ``np.mean(a, 0)``, ``np.std(a, 0)`` and ``np.max(np.abs(a), 0)``.  Each column is first
        divided by a power of two ``2**(e - 1)`` with ``max|a| = f * 2**e``, ``0.5 <= f < 1``
        (an exact division), so its values lie in ``[-2, 2)``; squares and sums then neither
        overflow (values near 1e308) nor underflow (values near 1e-300), and the results are
        multiplied back by the same factor.
    """
    k = a.shape[1]
    if a.shape[0] == 0 or k == 0:
        return np.zeros(k), np.zeros(k), np.zeros(k)
    maxabs = np.max(np.abs(a), axis=0)
    _, exponent = np.frexp(maxabs)  # frexp(0) = (0, 0): factor 0.5, harmless
    factor = np.ldexp(1.0, exponent - 1)  # exponent <= 1024, so factor <= 2**1023 is finite
    unit = a / factor
    return unit.mean(axis=0) * factor, unit.std(axis=0) * factor, maxabs


def _cell_class(cell):
    from numrnn.layers import GRU, LSTM, RNN

    return {"lstm": LSTM, "gru": GRU, "rnn": RNN}[cell]


def _net_specs(cell, n_targets, n_exog, horizon, hidden_size, num_layers, outputs, dtype):
    """The :func:`numrnn.nn.module_spec` descriptions (less backend and seed) of a :class:`_Net`'s
    two modules, ``{"rnn": ..., "head": ...}``: :class:`_Net` is built from them and
    :meth:`Forecaster.load` checks a file's arrays against them (``numrnn.io._check_module``)."""
    dtype = np.dtype(dtype).name
    return {
        "rnn": {
            "type": _cell_class(cell).__name__,
            "config": {"input_size": n_targets + n_exog, "hidden_size": hidden_size, "num_layers": num_layers,
                       "bias": True, "bidirectional": False, "dtype": dtype},
        },
        "head": {
            "type": "Linear",
            "config": {"in_features": hidden_size + horizon * n_exog, "out_features": horizon * n_targets * outputs,
                       "bias": True, "dtype": dtype},
        },
    }


class _Net(nn.Module):
    """Recurrent encoder + linear MIMO head.

    Input ``x`` is time-major (lookback + horizon, B, k + m): the first ``lookback`` steps are the
    history (targets and covariates); for the last ``horizon`` steps only the covariate columns
    are read, flattened, and fed to the head next to the encoder's last hidden state.
    """

    def __init__(self, cell, n_targets, n_exog, lookback, horizon, hidden_size, num_layers, outputs, dtype, backend, seeds):
        super().__init__()
        self.lookback, self.horizon = lookback, horizon
        self.n_targets, self.n_exog = n_targets, n_exog
        specs = _net_specs(cell, n_targets, n_exog, horizon, hidden_size, num_layers, outputs, dtype)
        rnn, head = specs["rnn"], specs["head"]
        self.rnn = nn.module_from_spec({**rnn, "config": {**rnn["config"], "backend": backend, "seed": seeds[0]}})
        self.head = nn.module_from_spec({**head, "config": {**head["config"], "seed": seeds[1]}})
        self.params = {**{f"rnn.{k}": v for k, v in self.rnn.params.items()}, **{f"head.{k}": v for k, v in self.head.params.items()}}
        self.grads = {**{f"rnn.{k}": v for k, v in self.rnn.grads.items()}, **{f"head.{k}": v for k, v in self.head.grads.items()}}

    def forward(self, x):
        y, _ = self.rnn(x[: self.lookback])
        last = y[-1]
        if self.n_exog:
            future = x[self.lookback :, :, self.n_targets :]  # (horizon, B, m)
            future = future.transpose(1, 0, 2).reshape(last.shape[0], -1)
            last = np.concatenate([last, future], axis=1)
        return self.head(last)

    def backward(self, dy):
        d_last = self.head.backward(dy)
        hidden = self.rnn.hidden_size
        steps = self.lookback
        batch = d_last.shape[0]
        dy_seq = np.zeros((steps, batch, hidden), dtype=d_last.dtype)
        dy_seq[-1] = d_last[:, :hidden]
        self.rnn.backward(dy_seq)
        return None  # the input gradient is not needed

    def train(self, mode=True):
        super().train(mode)
        self.rnn.train(mode)
        self.head.train(mode)
        return self

    def zero_grad(self):
        self.rnn.zero_grad()
        self.head.zero_grad()


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_series(name, value):
    """A finite float64 array of shape (n, k); also returns whether the input was 1-D."""
    array = check.as_float_array(value, name, np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, k), got {array.ndim}-D with shape {array.shape}")
    if array.shape[0] == 0 or array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    return (array[:, None] if array.ndim == 1 else array), array.ndim == 1


class Forecaster:
    """Recurrent multi-step forecaster with sensible defaults.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        Recurrent cell of the encoder.
    lookback : int, default 24
        Number of past values the model reads.
    horizon : int, default 12
        Number of future values it forecasts (all at once).
    hidden_size : int, default 32
        Units of the recurrent layer.
    num_layers : int, default 1
        Stacked recurrent layers.
    seed : int or None, default 0
        Seed of the weights and the shuffling, an integer in ``[0, 2**63)`` (the project's one
        seed rule, :func:`numrnn._validation.check_seed`: ``TypeError`` for a non-integer,
        ``ValueError`` for a negative or too large one).  The same seed and data give the same
        forecast, bit for bit.  None draws a fresh seed at every :meth:`fit`; the seed drawn is
        recorded in ``seed_`` and in the file :meth:`save` writes.
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Where the recurrent kernels run.
    epochs : int, default 300
        Most passes over the training windows (iterations for ``optimizer="lbfgs"``).
    lr : float, default 0.01
        Learning rate (ignored by L-BFGS).  Too large a rate makes training diverge, which
        :meth:`fit` reports with :class:`NonFiniteForecastError`.
    batch_size : int, default 32
        Windows per step.
    optimizer : {"adam", "adamw", "sgd", "lbfgs"}, default "adam"
        ``"lbfgs"`` trains full-batch with SciPy's L-BFGS.
    loss : {"mse", "mae", "huber", "gaussian"}, default "mse"
        ``"gaussian"`` also learns a variance per step; then ``predict(..., return_std=True)``
        works.
    clip_norm : float or None, default 1.0
        Global gradient-norm clipping.
    validation : int or None, default None
        Number of final windows held out for early stopping; None means ``horizon``; 0 disables
        early stopping (all ``epochs`` run).
    patience : int, default 30
        Epochs without validation improvement before stopping.
    ensemble : int, default 5
        Members trained with different seeds; their forecasts are averaged.
    transform : {"auto", "log", "none"}, default "auto"
        "auto": log of every strictly positive column.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of the networks (float32 fits twice as fast here and forecasts within ~1e-5
        relative of float64).  Windows and scaling are computed in float64 either way.

    Attributes
    ----------
    history_ : list of dict
        Per member: ``train_loss``, ``val_loss`` (lists), ``best_epoch``, ``epochs_run``.
    seed_ : int
        The seed used (the one drawn when ``seed`` is None).

    Raises
    ------
    TypeError, ValueError
        For a constructor argument of the wrong type or value; the message names the argument,
        what was expected and what was given.

    Examples
    --------
    >>> from numrnn.datasets import load_airline
    >>> y = load_airline()
    >>> f = Forecaster(horizon=12).fit(y[:-12], progress=False)   # doctest: +SKIP
    >>> f.predict(y[:-12])                                         # doctest: +SKIP
    """

    def __init__(
        self,
        cell="lstm",
        lookback=24,
        horizon=12,
        hidden_size=32,
        num_layers=1,
        seed=0,
        backend="auto",
        *,
        epochs=300,
        lr=0.01,
        batch_size=32,
        optimizer="adam",
        loss="mse",
        clip_norm=1.0,
        validation=None,
        patience=30,
        ensemble=5,
        transform="auto",
        dtype=np.float32,
    ):
        self.cell = check.check_choice(cell, "cell", _CELLS)
        self.lookback = check.check_int(lookback, "lookback", 1)
        self.horizon = check.check_int(horizon, "horizon", 1)
        self.hidden_size = check.check_int(hidden_size, "hidden_size", 1)
        self.num_layers = check.check_int(num_layers, "num_layers", 1)
        # None stays None here (a seed is drawn per fit); integers follow the one seed rule
        self.seed = None if seed is None else check.check_seed(seed, "seed")
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, got {type(backend).__name__}")
        from numrnn.backends import get_backend

        get_backend(backend)  # validates the name (and availability) now rather than in fit
        self.backend = backend
        self.epochs = check.check_int(epochs, "epochs", 1)
        self.lr = check.check_positive_float(lr, "lr")
        self.batch_size = check.check_int(batch_size, "batch_size", 1)
        self.optimizer = check.check_choice(optimizer, "optimizer", tuple(OPTIMIZERS) + ("lbfgs",))
        self.loss = check.check_choice(loss, "loss", tuple(LOSSES))
        self.clip_norm = check.check_positive_float(clip_norm, "clip_norm", allow_none=True)
        self.validation = check.check_int(validation, "validation", 0, allow_none=True)
        self.patience = check.check_int(patience, "patience", 1)
        self.ensemble = check.check_int(ensemble, "ensemble", 1)
        self.transform = check.check_choice(transform, "transform", _TRANSFORMS)
        self.dtype = check.check_dtype(dtype)
        self._fitted = None

    # ------------------------------------------------------------------ parameters

    def get_params(self):
        """Constructor arguments as a JSON-able dict: ``Forecaster(**f.get_params())`` is an unfitted copy."""
        return {
            "cell": self.cell,
            "lookback": self.lookback,
            "horizon": self.horizon,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "seed": self.seed,
            "backend": self.backend,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "loss": self.loss,
            "clip_norm": self.clip_norm,
            "validation": self.validation,
            "patience": self.patience,
            "ensemble": self.ensemble,
            "transform": self.transform,
            "dtype": self.dtype.name,
        }

    def __repr__(self):
        defaults = {name: p.default for name, p in inspect.signature(Forecaster).parameters.items()}
        defaults["dtype"] = np.dtype(defaults["dtype"]).name
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k) != v}
        return f"Forecaster({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @property
    def is_fitted(self):
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return self._fitted is not None

    @property
    def history_(self):
        self._require_fitted("history_")
        return self._fitted["history"]

    @property
    def seed_(self):
        self._require_fitted("seed_")
        return self._fitted["seed"]

    def _require_fitted(self, what):
        if self._fitted is None:
            raise RuntimeError(f"{what} needs a fitted Forecaster: call fit() first")

    # ------------------------------------------------------------------ data

    def _validation_windows(self):
        return self.horizon if self.validation is None else self.validation

    def _check_exog(self, exog, n, name="exog"):
        if exog is None:
            return np.zeros((n, 0))
        array = check.as_float_array(exog, name, np.float64)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, m), got {array.ndim}-D with shape {array.shape}")
        if array.shape[0] != n:
            raise ValueError(f"{name} must have {n} rows (one per value of y), got {array.shape[0]}")
        return array

    def _transform(self, y, log):
        z = y.copy()
        if np.any(log):
            if np.any(y[:, log] <= 0):
                bad = [int(c) for c in np.flatnonzero(log) if np.any(y[:, c] <= 0)]
                raise ValueError(
                    f"y must be strictly positive in column(s) {bad}: the model was fitted on their log"
                )
            z[:, log] = np.log(y[:, log])
        return z

    def _windows(self, z, ex, starts, scaler):
        """Inputs (lookback + horizon, N, k + m) and targets (N, horizon * k) for window starts."""
        lookback, horizon = self.lookback, self.horizon
        zs = z / scaler["scale"]
        exs = (ex - scaler["exog_mean"]) / scaler["exog_std"]
        k, m = zs.shape[1], exs.shape[1]
        offsets = np.arange(lookback + horizon)
        rows = starts[:, None] + offsets[None, :]  # (N, lookback + horizon)
        level = zs[starts + lookback - 1]  # (N, k)
        seq = zs[rows] - level[:, None, :]  # (N, L + H, k)
        x = np.zeros((len(starts), lookback + horizon, k + m))
        x[:, :lookback, :k] = seq[:, :lookback]
        x[:, :, k:] = exs[rows]
        target = seq[:, lookback:].reshape(len(starts), horizon * k)
        return np.ascontiguousarray(x.transpose(1, 0, 2), dtype=self.dtype), target.astype(self.dtype)

    # ------------------------------------------------------------------ fit

    def fit(self, y, exog=None, progress=True):
        """Fit the forecaster on a series.

        Parameters
        ----------
        y : array_like, shape (n,) or (n, k)
            The series (k series side by side), finite.  Needs
            n >= lookback + horizon + validation.
        exog : array_like, shape (n,) or (n, m), optional
            Known covariates aligned with ``y`` (calendar features, prices, ...).  Their future
            values must then be given to :meth:`predict`.
        progress : bool, default True
            Show a tqdm progress bar per ensemble member (epoch, train and validation loss).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            For bad input (the message names the argument, what was expected and what was given).
        NonFiniteForecastError
            If training diverges: a member's loss or weights become NaN or inf, or the fitted
            model's in-sample forecasts (one per training and validation window) are not finite.
            The message names ``lr`` (and ``clip_norm`` when it is None) when the step size is
            the likely cause.

        Notes
        -----
        A fit that raises leaves the forecaster as it was: an earlier fitted state survives.
        NumPy floating-point warnings are not emitted; non-finite values are checked instead.
        """
        y2, one_d = _as_series("y", y)
        n, k = y2.shape
        ex = self._check_exog(exog, n)
        progress = check.check_bool(progress, "progress")
        val = self._validation_windows()
        need = self.lookback + self.horizon + val
        if n < need:
            raise ValueError(
                f"y must have at least lookback + horizon + validation = {self.lookback} + {self.horizon} + {val} "
                f"= {need} values, got {n}"
            )
        # fitted on the part before the validation targets
        fit_end = n - val
        if self.transform == "auto":
            log = np.all(y2[:fit_end] > 0, axis=0) & np.all(y2 > 0, axis=0)
        elif self.transform == "log":
            if np.any(y2 <= 0):
                raise ValueError("transform='log' needs a strictly positive y; use transform='auto' or 'none'")
            log = np.ones(k, dtype=bool)
        else:
            log = np.zeros(k, dtype=bool)
        z = self._transform(y2, log)
        # overflow- and underflow-safe statistics (see _safe_location_scale)
        _, z_std, z_max = _safe_location_scale(z[:fit_end])
        # a constant column: log columns keep 1 (log units are relative already); the others are
        # divided by their magnitude, so that a constant near 1e-200 is not forecast near 0
        constant_scale = np.where(log | (z_max == 0), 1.0, z_max)
        scale = np.where(z_std > 0, z_std, constant_scale)
        exog_mean, exog_std, _ = _safe_location_scale(ex[:fit_end])
        exog_std = np.where(exog_std > 0, exog_std, 1.0)
        scaler = {"log": log, "scale": scale, "exog_mean": exog_mean, "exog_std": exog_std}
        starts = np.arange(n - self.lookback - self.horizon + 1)
        with np.errstate(**_QUIET):
            x_all, t_all = self._windows(z, ex, starts, scaler)
            level = (z / scale)[starts + self.lookback - 1]  # (N, k), as in _windows
        if not (np.isfinite(x_all).all() and np.isfinite(t_all).all()):
            raise ValueError(
                f"y and exog must fit in {self.dtype.name} once centred and scaled; their range is too "
                "wide (values near the float64 limit 1.8e308?)"
            )
        n_train = len(starts) - val
        x_tr, t_tr = x_all[:, :n_train], t_all[:n_train]
        validation = (x_all[:, n_train:], t_all[n_train:]) if val else None

        seed = check.check_seed(self.seed, "seed")  # None draws one, recorded in seed_
        with limit_threads(1), np.errstate(**_QUIET):
            fitted = self._fit_members(x_tr, t_tr, validation, k, ex.shape[1], seed, progress)
            self._check_forecasts(fitted["members"], x_all, level, scaler, k, "the in-sample forecasts")
        fitted.update(scaler=scaler, n_targets=k, n_exog=ex.shape[1], one_d=one_d, seed=seed)
        self._fitted = fitted  # only now: a fit that raised leaves the earlier state
        return self

    # ------------------------------------------------------------------ non-finite checks

    def _lr_hint(self):
        """What to change when training diverged, naming the arguments with their values."""
        if self.optimizer == "lbfgs":
            return (
                "optimizer='lbfgs' (which does not use lr) diverged; expected a finite fit, so try "
                "optimizer='adam' or fewer epochs"
            )
        hint = (
            f"lower lr (expected a rate small enough for the loss to stay finite, got lr={self.lr:g}; "
            "the default is 0.01)"
        )
        if self.clip_norm is None:
            hint += " or set clip_norm (got None; the default is 1.0)"
        return hint

    def _check_member(self, net, hist, j):
        """Raise :class:`NonFiniteForecastError` when member ``j``'s loss or weights are not finite.

        Parameters
        ----------
        net : _Net
            The trained member.
        hist : dict
            Its training history (``train_loss``, ``epochs_run``).
        j : int
            Its index in the ensemble.
        """
        where = f"member {j + 1}/{self.ensemble}"
        losses = [float(v) for v in hist["train_loss"]]
        if losses and not math.isfinite(losses[-1]):
            raise NonFiniteForecastError(
                f"training diverged: the training loss of {where} became {losses[-1]} after "
                f"{hist['epochs_run']} epoch(s); {self._lr_hint()}"
            )
        bad = [name for name, value in net.params.items() if not np.isfinite(host_copy(value)).all()]
        if bad:
            raise NonFiniteForecastError(
                f"training diverged: the weights {bad} of {where} are not finite after "
                f"{hist['epochs_run']} epoch(s); {self._lr_hint()}"
            )

    def _member_outputs(self, members, x):
        """Raw outputs of every member (eval mode, float64, shape (N, outputs)) for windows ``x``."""
        outs = []
        for net in members:
            net.eval()
            with limit_threads(1), np.errstate(**_QUIET):
                outs.append(np.asarray(net(x), dtype=np.float64))
        return outs

    def _invert(self, mean, level, scaler):
        """Undo scaling and transform: scaled outputs ``mean`` (N, horizon, k), levels (N, k).

        Returns the forecasts (N, horizon, k) in the original units; entries that overflow are
        inf (no warning), for the caller to check.
        """
        with np.errstate(**_QUIET):
            zf = (mean + level[:, None, :]) * scaler["scale"]
            forecast = zf.copy()
            log = scaler["log"]
            forecast[..., log] = np.exp(zf[..., log])
        return forecast

    def _check_forecasts(self, members, x, level, scaler, k, what, outs=None, forecast=None):
        """Raise :class:`NonFiniteForecastError` unless every output and forecast is finite.

        Parameters
        ----------
        members : list of _Net
            The ensemble.
        x : ndarray, shape (lookback + horizon, N, k + m)
            Windows, as made by ``_windows``.
        level : ndarray, shape (N, k)
            Scaled last input value of each window.
        scaler : dict
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
        hk = self.horizon * k
        if outs is None:
            outs = self._member_outputs(members, x)
        with np.errstate(**_QUIET):
            mean = np.mean([o[:, :hk].reshape(-1, self.horizon, k) for o in outs], axis=0)
        if forecast is None:
            forecast = self._invert(mean, level, scaler)
        if all(np.isfinite(o).all() for o in outs) and np.isfinite(forecast).all():
            return
        finite = np.isfinite(mean)
        reach = float(np.max(np.abs(mean[finite]))) if finite.any() else math.inf
        if not finite.all() or not all(np.isfinite(o).all() for o in outs) or reach > _SANE_OUTPUT:
            raise NonFiniteForecastError(
                f"training diverged: {what} are not finite (the network's outputs reach {reach:.3g} "
                f"standard deviations of the training data from the last value, expected at most "
                f"about {_SANE_OUTPUT:g}); {self._lr_hint()}"
            )
        raise NonFiniteForecastError(
            f"{what} are not finite although the network's outputs are in range (at most {reach:.3g} "
            "standard deviations from the last value): the series is too close to the float64 limit "
            "(1.8e308) for its forecasts to be represented; rescale y"
        )

    def _fit_members(self, x_tr, t_tr, validation, k, m, seed, progress):
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
        loss = get_loss(self.loss)
        members, optimizers, history = [], [], []
        children = np.random.SeedSequence(seed).spawn(self.ensemble)
        for j, child in enumerate(children):
            init_rnn, init_head, shuffle = (int(s) for s in child.generate_state(3))
            net = self._make_net(k, m, (init_rnn, init_head))
            desc = f"member {j + 1}/{self.ensemble}"
            try:
                if self.optimizer == "lbfgs":
                    bar = None
                    if progress:
                        from tqdm.auto import tqdm

                        bar = tqdm(total=self.epochs, desc=desc, leave=False)
                    notice = compile_notice(bar)  # "compiling" on the bar while kernels compile
                    try:
                        result = fit_lbfgs(
                            net, x_tr, t_tr, loss=loss, maxiter=self.epochs, validation=validation,
                            patience=self.patience if validation is not None else None,
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
                    opt = get_optimizer(self.optimizer, lr=self.lr)
                    hist = _fit_loop(
                        net, x_tr, t_tr, loss=loss, optimizer=opt, epochs=self.epochs, batch_size=self.batch_size,
                        clip_norm=self.clip_norm, validation=validation, patience=self.patience, seed=shuffle,
                        progress=progress, desc=desc,
                    )
            except (FloatingPointError, ValueError) as exc:
                # The windows were checked finite above, so a non-finite value met inside the training
                # loop (numrnn.train.fit's FloatingPointError for the loss; the layers' and optimisers'
                # "contains NaN or inf" ValueError for outputs, gradients and updates) means divergence.
                if isinstance(exc, ValueError) and "NaN or inf" not in str(exc):
                    raise
                raise NonFiniteForecastError(
                    f"training diverged in member {j + 1}/{self.ensemble} ({exc}); {self._lr_hint()}"
                ) from exc
            self._check_member(net, hist, j)
            members.append(net)
            optimizers.append(opt)
            history.append(hist)
        return {"members": members, "optimizers": optimizers, "history": history}

    def _make_net(self, k, m, seeds):
        outputs = get_loss(self.loss).outputs_per_target
        return _Net(self.cell, k, m, self.lookback, self.horizon, self.hidden_size, self.num_layers, outputs,
                    self.dtype, self.backend, seeds)

    # ------------------------------------------------------------------ predict

    def predict(self, y, exog=None, exog_future=None, return_std=False):
        """Forecast the ``horizon`` values after the end of ``y``.

        Parameters
        ----------
        y : array_like, shape (n,) or (n, k)
            History with n >= lookback (only the last ``lookback`` values are read); k as in fit.
        exog : array_like, shape (n, m), optional
            Covariates aligned with ``y``; required when fitted with ``exog``.
        exog_future : array_like, shape (horizon, m), optional
            Covariates of the forecast steps; required when fitted with ``exog``.
        return_std : bool, default False
            Also return the predictive standard deviation (needs ``loss="gaussian"``).  With a
            log transform it is the delta-method value ``forecast * sigma_log``; across ensemble
            members the mixture's spread is included.

        Returns
        -------
        forecast : ndarray, shape (horizon,) or (horizon, k)
            Finite values.
        std : ndarray, same shape
            Only with ``return_std=True``; finite.

        Raises
        ------
        RuntimeError
            If the forecaster is not fitted.
        TypeError, ValueError
            For bad input, including a ``y`` whose last ``lookback`` values, scaled as in fit, do
            not fit in the model's dtype.
        NonFiniteForecastError
            If the forecast (or its standard deviation) is not finite; the message says whether
            the network's outputs are out of range (a diverged fit: lower ``lr``) or the series is
            too close to the float64 limit.
        """
        if self._fitted is None:
            raise RuntimeError("predict() needs a fitted Forecaster: call fit() first")
        fitted = self._fitted
        return_std = check.check_bool(return_std, "return_std")
        if return_std and self.loss != "gaussian":
            raise ValueError(f"return_std=True needs loss='gaussian', this Forecaster was fitted with loss={self.loss!r}")
        y2, _ = _as_series("y", y)
        n, k = y2.shape
        if k != fitted["n_targets"]:
            raise ValueError(f"y must have {fitted['n_targets']} column(s) as in fit, got {k}")
        if n < self.lookback:
            raise ValueError(f"y must have at least lookback = {self.lookback} values, got {n}")
        m = fitted["n_exog"]
        if m:
            if exog is None or exog_future is None:
                raise ValueError(f"exog and exog_future are required: the model was fitted with {m} covariate(s)")
            ex = self._check_exog(exog, n)
            exf = self._check_exog(exog_future, self.horizon, "exog_future")
            if ex.shape[1] != m or exf.shape[1] != m:
                raise ValueError(f"exog and exog_future must have {m} column(s) as in fit, got {ex.shape[1]} and {exf.shape[1]}")
        else:
            if exog is not None or exog_future is not None:
                raise ValueError("exog/exog_future given, but the model was fitted without covariates")
            ex = np.zeros((n, 0))
            exf = np.zeros((self.horizon, 0))
        scaler = fitted["scaler"]
        hist = y2[n - self.lookback :]
        z = self._transform(hist, scaler["log"])
        z_full = np.concatenate([z, np.zeros((self.horizon, k))])
        ex_full = np.concatenate([ex[n - self.lookback :], exf])
        with np.errstate(**_QUIET):
            x, _ = self._windows(z_full, ex_full, np.array([0]), scaler)
            level = z[-1:] / scaler["scale"]  # (1, k)
        if not np.isfinite(x).all():
            raise ValueError(
                f"y (and exog) must stay within {self.dtype.name} range once scaled as in fit (divided by "
                f"{scaler['scale'].tolist()}); its last {self.lookback} values are too far from the fitted data"
            )
        hk = self.horizon * k
        outs = self._member_outputs(fitted["members"], x)
        forecast = self._invert(np.mean([o[:, :hk].reshape(-1, self.horizon, k) for o in outs], axis=0), level, scaler)
        self._check_forecasts(fitted["members"], x, level, scaler, k, "the forecasts", outs=outs, forecast=forecast)
        forecast = forecast[0]
        std = None
        if return_std:
            log = scaler["log"]
            means = [o[0, :hk].reshape(self.horizon, k) for o in outs]
            variances = [np.exp(np.clip(o[0, hk:], -30.0, 30.0)).reshape(self.horizon, k) for o in outs]
            mean = np.mean(means, axis=0)
            with np.errstate(**_QUIET):
                var = np.mean([v + mu**2 for v, mu in zip(variances, means)], axis=0) - mean**2
                sd = np.sqrt(np.maximum(var, 0.0)) * scaler["scale"]
                std = sd.copy()
                std[:, log] = forecast[:, log] * sd[:, log]
            if not np.isfinite(std).all():
                raise NonFiniteForecastError(
                    f"the forecast's standard deviation is not finite ({std.tolist()}) although the forecast is: "
                    "the predictive spread overflows float64; rescale y"
                )
        if fitted["one_d"]:
            forecast = forecast[:, 0]
            std = None if std is None else std[:, 0]
        return (forecast, std) if return_std else forecast

    # ------------------------------------------------------------------ save / load

    def save(self, path):
        """Save the fitted forecaster (config, every weight, the scaler, optimiser state) to ``path``.

        The write is atomic: a temporary file in the same folder is flushed, fsync-ed and moved
        into place, so an interrupted save leaves any previous file intact.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write (an ``.npz`` file).

        Raises
        ------
        RuntimeError
            If the forecaster is not fitted.

        Notes
        -----
        The saved constructor parameters hold the seed actually used (``seed_``), also when the
        forecaster was made with ``seed=None``: ``Forecaster(**Forecaster.load(path).get_params())``
        fitted on the same data gives the same weights.
        """
        if self._fitted is None:
            raise RuntimeError("save() needs a fitted Forecaster: call fit() first")
        fitted = self._fitted
        arrays = {
            "scaler/log": fitted["scaler"]["log"].astype(np.uint8),
            "scaler/scale": fitted["scaler"]["scale"],
            "scaler/exog_mean": fitted["scaler"]["exog_mean"],
            "scaler/exog_std": fitted["scaler"]["exog_std"],
        }
        optimizers = []
        for j, (net, opt) in enumerate(zip(fitted["members"], fitted["optimizers"])):
            for name, value in net.state_dict().items():
                arrays[f"member{j}/{name}"] = value
            if opt is None:
                optimizers.append(None)
            else:
                opt_config, opt_arrays = nio._optimizer_to_arrays(opt, prefix=f"optim{j}")
                optimizers.append(opt_config)
                arrays.update(opt_arrays)

        def _jsonable(h):
            best = h["best_val_loss"]
            return {
                "train_loss": [float(v) for v in h["train_loss"]],
                "val_loss": [float(v) for v in h["val_loss"]],
                "best_epoch": int(h["best_epoch"]),
                "epochs_run": int(h["epochs_run"]),
                "best_val_loss": float(best) if math.isfinite(best) else None,
            }

        params = self.get_params()
        params["seed"] = int(fitted["seed"])  # the seed drawn for seed=None, so the config reproduces the fit
        config = {
            "params": params,
            "n_targets": fitted["n_targets"],
            "n_exog": fitted["n_exog"],
            "one_d": fitted["one_d"],
            "seed_used": fitted["seed"],
            "optimizers": optimizers,
            "history": [_jsonable(h) for h in fitted["history"]],
        }
        nio.save_npz(path, "forecaster", config, arrays)

    @classmethod
    def load(cls, path):
        """Load a forecaster written by :meth:`save`.

        Everything read from the file is checked before any network is built: the config's keys
        and the types and ranges of its values (the constructor parameters through the
        constructor's own checks), every member's weights and optimiser state against the shapes
        and dtypes the config implies (``numrnn.io``'s checks), the scaler (shapes, dtypes, finite
        values, positive scales) and the training history.  So a crafted file (a huge
        ``hidden_size``, ``num_layers``, ``ensemble`` or ``horizon``, arrays missing or of the
        wrong shape, ...) raises the :class:`ValueError` below instead of allocating, hanging or
        raising another exception.

        Raises
        ------
        FileNotFoundError
            If there is no file.
        ValueError
            ``"cannot load '<path>': ..."``: if the file is truncated, corrupt, not a saved
            Forecaster, or its config or arrays are not what :meth:`save` writes.
        RuntimeError
            If the file asks for ``backend="cuda"`` and CUDA is not available here.
        """
        config, arrays = nio.load_npz(path, kind="forecaster")
        where = f"cannot load {nio._check_path(path)!r}"
        try:
            saved = _check_saved(cls, config, arrays)
            f = saved["forecaster"]
            # built only now, from checked configs and arrays: optimisers first (no network yet)
            optimizers = [
                None if opt_config is None else nio._optimizer_from_arrays(opt_config, arrays, prefix=f"optim{j}")
                for j, opt_config in enumerate(saved["optimizers"])
            ]
            members = []
            for state in saved["members"]:
                net = f._make_net(saved["n_targets"], saved["n_exog"], (0, 0))
                net.load_state_dict(state)
                members.append(net)
        except KeyError as exc:
            raise ValueError(f"{where}: the file lacks {exc}") from None
        except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            # OverflowError: numrnn.optim's float() of an int beyond float range in a crafted config
            raise ValueError(f"{where}: its contents do not fit its configuration ({exc})") from None
        f._fitted = {
            "members": members,
            "optimizers": optimizers,
            "history": saved["history"],
            "scaler": saved["scaler"],
            "n_targets": saved["n_targets"],
            "n_exog": saved["n_exog"],
            "one_d": saved["one_d"],
            "seed": saved["seed"],
        }
        return f


#: The keys of the config :meth:`Forecaster.save` writes.
_SAVED_KEYS = ("params", "n_targets", "n_exog", "one_d", "seed_used", "optimizers", "history")
#: The keys of each member's training history.
_HISTORY_KEYS = ("train_loss", "val_loss", "best_epoch", "epochs_run", "best_val_loss")


def _check_saved(cls, config, arrays):
    """Check the config and arrays of a saved Forecaster (see :meth:`Forecaster.load`) without
    building any network; raise ``ValueError``/``TypeError`` naming what is wrong.

    Every size the config gives is compared with the arrays at hand before anything depends on
    it, and each loop (members, layers) stops at the first array missing, so a huge size fails
    fast.  Returns the unfitted :class:`Forecaster` and the checked parts of its fitted state.
    """
    if not isinstance(config, dict):
        raise ValueError(f"the config must be a dict, got {type(config).__name__}")
    missing = [key for key in _SAVED_KEYS if key not in config]
    if missing:
        raise ValueError(f"the config lacks {missing}")
    params = config["params"]
    if not isinstance(params, dict):
        raise ValueError(f"config['params'] must be a dict, got {type(params).__name__}")
    names = list(inspect.signature(cls).parameters)
    if set(params) != set(names):
        raise ValueError(
            f"config['params'] must hold {names}: missing {sorted(set(names) - set(params))}, "
            f"unexpected {sorted(set(params) - set(names))}"
        )
    dtype = params["dtype"]
    if dtype not in ("float32", "float64"):  # before np.dtype() reads a crafted value
        raise ValueError(f"config['params']['dtype'] must be 'float32' or 'float64', got {dtype!r}")
    seed = config["seed_used"]
    if seed is None:  # check_seed would draw one
        raise ValueError("config['seed_used'] must be an integer in [0, 2**63), got None")
    seed = check.check_seed(seed, "config['seed_used']")
    if params["seed"] is None or check.check_seed(params["seed"], "config['params']['seed']") != seed:
        raise ValueError(f"config['params']['seed'] must be the seed used, {seed}, got {params['seed']!r}")
    try:
        f = cls(**params)  # the constructor's own type and range checks; allocates nothing
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"config['params']: {exc}") from None
    k = check.check_positive_int(config["n_targets"], "config['n_targets']")
    m = check.check_int(config["n_exog"], "config['n_exog']", 0)
    one_d = check.check_bool(config["one_d"], "config['one_d']")
    if one_d and k != 1:
        raise ValueError(f"config['one_d'] is true but config['n_targets'] is {k}, not 1")
    optimizer_configs, history = config["optimizers"], config["history"]
    for key, value in (("optimizers", optimizer_configs), ("history", history)):
        if not isinstance(value, list) or len(value) != f.ensemble:  # before any loop over members
            length = len(value) if isinstance(value, list) else type(value).__name__
            raise ValueError(f"config[{key!r}] must be a list of ensemble = {f.ensemble} entries, got {length}")

    # the scaler: shapes and dtypes as saved, finite, positive scales, logs as the transform allows
    scaler = {
        "log": nio._expect(arrays, "scaler/log", (k,), "uint8"),
        "scale": nio._expect(arrays, "scaler/scale", (k,), "float64"),
        "exog_mean": nio._expect(arrays, "scaler/exog_mean", (m,), "float64"),
        "exog_std": nio._expect(arrays, "scaler/exog_std", (m,), "float64"),
    }
    if not np.isin(scaler["log"], (0, 1)).all():
        raise ValueError(f"array 'scaler/log' must hold 0 and 1, got {scaler['log'].tolist()}")
    scaler["log"] = scaler["log"].astype(bool)
    for key in ("scale", "exog_mean", "exog_std"):
        if not np.isfinite(scaler[key]).all():
            raise ValueError(f"array 'scaler/{key}' is not finite: {scaler[key].tolist()}")
    for key in ("scale", "exog_std"):
        if not (scaler[key] > 0).all():
            raise ValueError(f"array 'scaler/{key}' must be positive, got {scaler[key].tolist()}")
    if (f.transform == "log" and not scaler["log"].all()) or (f.transform == "none" and scaler["log"].any()):
        raise ValueError(f"array 'scaler/log' {scaler['log'].tolist()} does not fit transform={f.transform!r}")

    # every member's weights and optimiser state, against the shapes the parameters imply
    specs = _net_specs(f.cell, k, m, f.horizon, f.hidden_size, f.num_layers,
                       get_loss(f.loss).outputs_per_target, f.dtype)
    wanted_optimizer = None if f.optimizer == "lbfgs" else OPTIMIZERS[f.optimizer].__name__
    expected = {f"scaler/{key}" for key in scaler}
    members = []
    for j, opt_config in enumerate(optimizer_configs):
        prefix = f"member{j}/"
        found = {}
        for part, spec in specs.items():
            found.update(nio._check_module(spec, arrays, f"{prefix}{part}."))
        state = {name[len(prefix):]: arr for name, arr in found.items()}
        bad = [name for name, arr in found.items() if not np.isfinite(arr).all()]
        if bad:
            raise ValueError(f"arrays {bad} are not finite")
        expected |= set(found)
        if wanted_optimizer is None:
            if opt_config is not None:
                raise ValueError(
                    f"config['optimizers'][{j}] must be null for optimizer='lbfgs', got a {type(opt_config).__name__}"
                )
        else:
            if not isinstance(opt_config, dict) or opt_config.get("type") != wanted_optimizer:
                got = opt_config.get("type") if isinstance(opt_config, dict) else opt_config
                raise ValueError(
                    f"config['optimizers'][{j}] must be the state of an {wanted_optimizer} optimiser "
                    f"(optimizer={f.optimizer!r}), got type {got!r}"
                )
            expected |= nio._check_optimizer(opt_config, state, arrays, f"optim{j}")
        members.append(state)
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise ValueError(f"unexpected arrays {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    return {
        "forecaster": f,
        "members": members,
        "optimizers": optimizer_configs,
        "history": [_check_history(h, j) for j, h in enumerate(history)],
        "scaler": scaler,
        "n_targets": k,
        "n_exog": m,
        "one_d": one_d,
        "seed": seed,
    }


def _check_history(h, j):
    """A copy of saved training history ``h`` (member ``j``), checked, with ``None`` -> inf."""
    where = f"config['history'][{j}]"
    if not isinstance(h, dict):
        raise ValueError(f"{where} must be a dict, got {type(h).__name__}")
    missing = [key for key in _HISTORY_KEYS if key not in h]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    out = dict(h)
    for key in ("train_loss", "val_loss"):
        values = h[key]
        if not isinstance(values, list) or not all(_is_real(v) and check.is_finite_number(v) for v in values):
            raise ValueError(f"{where}[{key!r}] must be a list of finite numbers")
        out[key] = list(values)
    out["best_epoch"] = check.check_int(h["best_epoch"], f"{where}['best_epoch']", -1)
    out["epochs_run"] = check.check_int(h["epochs_run"], f"{where}['epochs_run']", 0)
    best = h["best_val_loss"]
    if best is not None and not (_is_real(best) and check.is_finite_number(best)):
        raise ValueError(f"{where}['best_val_loss'] must be a finite number or null, got {best!r}")
    out["best_val_loss"] = math.inf if best is None else best
    return out


def backtest(forecaster, y, folds=3, exog=None, step=None, m=1, progress=False):
    """Rolling-origin evaluation: refit a copy of ``forecaster`` per fold and score its forecast.

    Fold i (of ``folds``) trains on ``y[:origin_i]`` and forecasts ``y[origin_i : origin_i +
    horizon]``, with ``origin_i = n - horizon - (folds - 1 - i) * step``: the last fold's forecast
    ends at the end of ``y``.

    Parameters
    ----------
    forecaster : Forecaster
        Its parameters are copied (it is not modified).
    y : array_like, shape (n,) or (n, k)
    folds : int, default 3
    exog : array_like, shape (n, m), optional
        Covariates; the future part of each fold is passed as ``exog_future``.
    step : int, optional
        Distance between origins; default ``horizon``.
    m : int, default 1
        Season for MASE.
    progress : bool, default False
        Progress bars while fitting.

    Returns
    -------
    list of dict
        Per fold: ``fold``, ``origin``, ``mae``, ``rmse``, ``smape``, ``mase`` and ``forecast``.
    """
    if not isinstance(forecaster, Forecaster):
        raise TypeError(f"forecaster must be a Forecaster, got {type(forecaster).__name__}")
    folds = check.check_int(folds, "folds", 1)
    horizon = forecaster.horizon
    step = horizon if step is None else check.check_int(step, "step", 1)
    y2, one_d = _as_series("y", y)
    n = y2.shape[0]
    ex = forecaster._check_exog(exog, n) if exog is not None else None
    first_origin = n - horizon - (folds - 1) * step
    need = forecaster.lookback + horizon + forecaster._validation_windows()
    if first_origin < need:
        raise ValueError(
            f"y is too short for {folds} folds of step {step}: the first fold would train on {first_origin} "
            f"values, but the forecaster needs at least {need}"
        )
    y_in = y2[:, 0] if one_d else y2
    results = []
    for i in range(folds):
        origin = first_origin + i * step
        model = Forecaster(**forecaster.get_params())
        if ex is None:
            model.fit(y_in[:origin], progress=progress)
            forecast = model.predict(y_in[:origin])
        else:
            model.fit(y_in[:origin], exog=ex[:origin], progress=progress)
            forecast = model.predict(y_in[:origin], exog=ex[:origin], exog_future=ex[origin : origin + horizon])
        truth = y_in[origin : origin + horizon]
        results.append(
            {
                "fold": i,
                "origin": origin,
                "mae": nmetrics.mae(truth, forecast),
                "rmse": nmetrics.rmse(truth, forecast),
                "smape": nmetrics.smape(truth, forecast),
                "mase": nmetrics.mase(truth, forecast, y_in[:origin], m=m),
                "forecast": forecast,
            }
        )
    return results



