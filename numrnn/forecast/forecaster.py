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

import numpy as np

from numrnn import _validation as check
from numrnn.forecast import network, pandas_io, persistence
from numrnn.forecast.network import CELLS
from numrnn.forecast.preprocessing import TRANSFORMS, ColumnScaler
from numrnn.forecast.training import NonFiniteForecastError, check_forecasts, fit_members, member_outputs, mixture_std
from numrnn.losses import LOSSES, get_loss
from numrnn.optim import OPTIMIZERS
from numrnn.train import limit_threads

__all__ = ["Forecaster", "NonFiniteForecastError"]

_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")



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
        Dtype of the networks (float32 fits faster and forecasts within ~1e-5 relative
        of float64).  Windows and scaling are computed in float64 either way.

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
        self.cell = check.check_choice(cell, "cell", CELLS)
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
        self.transform = check.check_choice(transform, "transform", TRANSFORMS)
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

    def _windows(self, zs, exs, starts):
        """Inputs (lookback + horizon, N, k + m) and targets (N, horizon * k) for window starts.

        Parameters
        ----------
        zs : ndarray, shape (n, k)
            The series in model units (:meth:`ColumnScaler.transform_values`).
        exs : ndarray, shape (n, m)
            The covariates, standardised.
        starts : ndarray of int, shape (N,)
            First row of each window.
        """
        lookback, horizon = self.lookback, self.horizon
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
        y : array_like, pandas.Series or pandas.DataFrame, shape (n,) or (n, k)
            The series (k series side by side), finite.  Needs
            n >= lookback + horizon + validation.  A DataFrame's columns must all be numeric
            (or bool): one of another dtype raises ``ValueError`` naming it and its dtype.
        exog : array_like or pandas.DataFrame, shape (n,) or (n, m), optional
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
        y2, one_d = check.as_series(pandas_io.as_values(y, "y"), "y")
        n, k = y2.shape
        ex = check.check_covariates(pandas_io.as_values(exog, "exog"), n)
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
        scaler = ColumnScaler(self.transform).fit(y2, ex, fit_end)
        starts = np.arange(n - self.lookback - self.horizon + 1)
        with np.errstate(**_QUIET):
            zs = scaler.transform_values(y2)
            x_all, t_all = self._windows(zs, scaler.transform_exog(ex), starts)
            level = zs[starts + self.lookback - 1]  # (N, k), as in _windows
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
            fitted = fit_members(self, x_tr, t_tr, validation, k, ex.shape[1], seed, progress)
            check_forecasts(self, fitted["members"], x_all, level, scaler, k, "the in-sample forecasts")
        fitted.update(scaler=scaler, n_targets=k, n_exog=ex.shape[1], one_d=one_d, seed=seed)
        self._fitted = fitted  # only now: a fit that raised leaves the earlier state
        return self

    def _net_specs(self, k, m):
        """The specs of the network for k targets and m covariates (see :func:`encoder_head_specs`)."""
        outputs = get_loss(self.loss).outputs_per_target
        return network.encoder_head_specs(self.cell, k + m, self.hidden_size, self.num_layers, self.horizon * m,
                                          self.horizon * k * outputs, self.dtype)

    def _make_net(self, k, m, seeds):
        """An untrained :class:`WindowNet` for k targets and m covariates, its weights drawn from ``seeds``."""
        return network.WindowNet(self._net_specs(k, m), self.lookback, k, m, self.backend, seeds)

    # ------------------------------------------------------------------ predict

    def predict(self, y, exog=None, exog_future=None, return_std=False):
        """Forecast the ``horizon`` values after the end of ``y``.

        Parameters
        ----------
        y : array_like, pandas.Series or pandas.DataFrame, shape (n,) or (n, k)
            History with n >= lookback (only the last ``lookback`` values are read); k as in fit.
        exog : array_like or pandas.DataFrame, shape (n, m), optional
            Covariates aligned with ``y``; required when fitted with ``exog``.
        exog_future : array_like or pandas.DataFrame, shape (horizon, m), optional
            Covariates of the forecast steps; required when fitted with ``exog``.
        return_std : bool, default False
            Also return the predictive standard deviation (needs ``loss="gaussian"``).  With a
            log transform it is the delta-method value ``forecast * sigma_log``; across ensemble
            members the mixture's spread is included.

        Returns
        -------
        forecast : ndarray, shape (horizon,) or (horizon, k)
            Finite values.  For a pandas ``y``, a Series (named as ``y``) or a DataFrame (with
            ``y``'s columns) indexed by the ``horizon`` steps after ``y``'s index: the future dates
            of a ``DatetimeIndex`` (its ``freq``, else the one pandas infers) or ``PeriodIndex``,
            the next values of an evenly spaced integer index, else positions ``n .. n + horizon - 1``.
        std : ndarray, same shape
            Only with ``return_std=True``; finite; for a pandas ``y``, the same type and index as
            ``forecast``.

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
        like = y if pandas_io.is_pandas(y) else None
        y2, ex, exf = self._predict_inputs(y, exog, exog_future)
        n, k = y2.shape
        scaler = fitted["scaler"]
        hist = y2[n - self.lookback :]
        zs = scaler.transform_values(hist)
        zs_full = np.concatenate([zs, np.zeros((self.horizon, k))])
        ex_full = np.concatenate([ex[n - self.lookback :], exf])
        with np.errstate(**_QUIET):
            x, _ = self._windows(zs_full, scaler.transform_exog(ex_full), np.array([0]))
            level = zs[-1:]  # (1, k)
        if not np.isfinite(x).all():
            raise ValueError(
                f"y (and exog) must stay within {self.dtype.name} range once scaled as in fit (divided by "
                f"{scaler.scale.tolist()}); its last {self.lookback} values are too far from the fitted data"
            )
        hk = self.horizon * k
        outs = member_outputs(fitted["members"], x)
        mean = np.mean([o[:, :hk].reshape(-1, self.horizon, k) for o in outs], axis=0)
        forecast = scaler.inverse_transform(mean + level[:, None, :])
        check_forecasts(self, fitted["members"], x, level, scaler, k, "the forecasts", outs=outs, forecast=forecast)
        forecast = forecast[0]
        std = mixture_std(outs, self.horizon, k, scaler, forecast) if return_std else None
        if fitted["one_d"]:
            forecast = forecast[:, 0]
            std = None if std is None else std[:, 0]
        if like is not None:  # pandas in, pandas out: indexed by the steps after y's index
            forecast = pandas_io.wrap_forecast(forecast, like, self.horizon)
            std = None if std is None else pandas_io.wrap_forecast(std, like, self.horizon)
        return (forecast, std) if return_std else forecast

    def _predict_inputs(self, y, exog, exog_future):
        """``y`` (n, k), ``exog`` (n, m) and ``exog_future`` (horizon, m) checked against the fit."""
        fitted = self._fitted
        y2, _ = check.as_series(pandas_io.as_values(y, "y"), "y")
        n, k = y2.shape
        if k != fitted["n_targets"]:
            raise ValueError(f"y must have {fitted['n_targets']} column(s) as in fit, got {k}")
        if n < self.lookback:
            raise ValueError(f"y must have at least lookback = {self.lookback} values, got {n}")
        m = fitted["n_exog"]
        if not m:
            if exog is not None or exog_future is not None:
                raise ValueError("exog/exog_future given, but the model was fitted without covariates")
            return y2, np.zeros((n, 0)), np.zeros((self.horizon, 0))
        if exog is None or exog_future is None:
            raise ValueError(f"exog and exog_future are required: the model was fitted with {m} covariate(s)")
        ex = check.check_covariates(pandas_io.as_values(exog, "exog"), n)
        exf = check.check_covariates(pandas_io.as_values(exog_future, "exog_future"), self.horizon, "exog_future")
        if ex.shape[1] != m or exf.shape[1] != m:
            raise ValueError(f"exog and exog_future must have {m} column(s) as in fit, got {ex.shape[1]} and {exf.shape[1]}")
        return y2, ex, exf

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
        self._require_fitted("save()")
        persistence.save_forecaster(self, self._fitted, path)

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
        return persistence.load_forecaster(cls, path)
