r"""A global recurrent forecaster trained across many series at once (DeepAR / ES-RNN style).

>>> from numrnn.forecast import GlobalForecaster
>>> gf = GlobalForecaster(horizon=6, seed=0)                 # doctest: +SKIP
>>> gf.fit({"a": y_a, "b": y_b}, progress=False)             # doctest: +SKIP
>>> gf.predict(level=[80])["a"]["hi-80"].shape               # doctest: +SKIP
(6,)

One network is shared by every series: series sit on the batch axis, each mini-batch is a fresh
draw of windows from all series (windows are never all materialised), and series shorter than the
lookback take part through the recurrent layers' ``lengths`` (right-padded, as
``pack_padded_sequence``).

Model
-----
For series :math:`i` with values :math:`y_{i,1..n_i}`:

1. **Transform.**  :math:`z_{i,t} = \log y_{i,t}` when every value of the series is positive
   (``transform="auto"``), else :math:`z_{i,t} = y_{i,t}`.
2. **Scale.**  :math:`s_i = \operatorname{mean}_t |z_{i,t} - z_{i,t-1}|` over the part of the series
   the model may see (the training part in :meth:`GlobalForecaster.fit`, the whole history in
   :meth:`GlobalForecaster.predict`); the standard deviation, then a small fallback (``0.01`` for
   a log series, ``0.01 max|z|`` otherwise, 1 for all zeros) when it is 0.
3. **Windows.**  A window with forecast origin :math:`t` (the first forecast step) reads the
   :math:`L = \min(t, \text{lookback})` values before it, *relative to its level*
   :math:`\ell = z_{i,t-1}`:

   .. math::  x_j = (z_{i,t-L+j} - \ell) / s_i,\quad j < L, \qquad
              u_k = (z_{i,t+k} - \ell) / s_i,\quad k < h

   right-padded with zeros to ``lookback`` steps, with ``lengths = L``.  With calendar features
   (``ds`` given and ``season_length > 1``) each step also carries
   :math:`\sin(2\pi p/m), \cos(2\pi p/m)`, :math:`p` the step's position in the season (month of
   year for monthly data, quarter for quarterly data, ...), and the head reads those of the
   :math:`h` forecast steps.
4. **Network.**  :math:`h_n = \text{RNN}(x; \text{lengths})` (the last layer's state after each
   window's last valid step), then one :class:`numrnn.nn.Linear` head
   :math:`[\mu_{1..h}, \log\sigma^2_{1..h}] = W [h_n; c_{1..h}] + b` (direct multi-step).
   The means are residuals to a seasonal anchor (ES-RNN style), so an untrained network already
   forecasts a smoothed seasonal naive:
   :math:`a_k = (\bar z_1 - \ell)/s_i + \frac1J \sum_{j=1}^{J} (z_{i,t-jm+(k \bmod m)} - \bar z_j)/s_i`,
   :math:`\bar z_j` the mean of the j-th last whole season in the window, :math:`J \le 3` the
   number of whole seasons there; :math:`a_k = 0` (the naive level) for :math:`m = 1` or windows
   shorter than a season.
5. **Likelihood.**  :math:`u_k - a_k \sim \mathcal N(\mu_k, \sigma_k^2)`, trained by
   :class:`numrnn.losses.GaussianNLLLoss`.  *Why Gaussian:* on the log-and-level-normalised
   scale the one-step changes of most business and physical series are close to symmetric, so a
   Gaussian there is a log-normal in the original units (skewed, positive) for positive series;
   it needs two outputs per step, not one per quantile, gives every level from one fit without
   quantile crossing, and reuses numrnn's exact, tested NLL.  The heavier tails a Student-t
   would add come here from the ensemble: the predictive distribution is the **equal-weight
   mixture** of the members' Gaussians, whose quantiles are found by bisection of the mixture's
   CDF (so ``lo <= yhat <= hi``, and intervals widen with the level, by construction).
6. **Training.**  Adam with global gradient-norm clipping (:func:`numrnn.optim.clip_grad_norm`),
   ``steps_per_epoch`` mini-batches of ``batch_size`` windows per epoch: a series drawn uniformly,
   then an origin uniformly among its training origins.  The last ``horizon`` values of each series
   long enough (at least ``2 * horizon + 1`` values) form one validation window (of at most 1,024
   series, a subsample drawn once from ``seed`` when there are more); training stops
   when their mean NLL has not improved for ``patience`` epochs and the best weights are restored.
   ``ensemble`` members with seeds spawned from ``seed`` are trained.

The point forecast ``yhat`` is the mixture's median, in the original units
:math:`\exp(\ell + s\,q_{0.5})` for a log series (the median, not the mean, of a log-normal).
The same seed and data give the same forecasts bit for bit (windows are drawn from per-member
NumPy generators and the kernels run single-threaded).

Input formats
-------------
* a long pandas DataFrame with columns ``unique_id``, ``ds``, ``y``; ``ds`` datetimes (the
  frequency is inferred as :func:`pandas.infer_freq` does) or integers (a constant step).  Rows
  are sorted by ``unique_id`` and ``ds`` (so unsorted input is fine); forecasts come back as a
  DataFrame.
* a dict ``{key: 1-D array}`` or a list of 1-D arrays, of any lengths: no pandas needed;
  forecasts come back as a dict with the same keys (a list for a list).

pandas is imported only when a DataFrame is passed or returned.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from numrnn import _validation as check
from numrnn import io as nio
from numrnn import nn
from numrnn.losses import GaussianNLLLoss
from numrnn.optim import Adam, clip_grad_norm
from numrnn.train import limit_threads

__all__ = ["GlobalForecaster"]

_CELLS = ("lstm", "gru", "rnn")
_TRANSFORMS = ("auto", "none")
_KIND = "global_forecaster"
#: Most validation windows per epoch (a seeded subsample of the series beyond this many).
_MAX_VALIDATION = 1024
_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")


# ---------------------------------------------------------------------------------- small checks


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("this needs pandas (pip install 'numrnn[pandas]')") from None
    return pd


def _is_frame(data):
    """Whether ``data`` is a pandas DataFrame, without importing pandas when it is not loaded."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def _check_levels(level):
    """Sorted unique levels (floats in (0, 100)); ``None`` -> ``[]``."""
    if level is None:
        return []
    if isinstance(level, numbers.Real) and not isinstance(level, bool):
        level = [level]
    if isinstance(level, (str, bytes)) or not hasattr(level, "__iter__"):
        raise TypeError(f"level must be a number or a list of numbers in (0, 100), got {level!r}")
    out = []
    for v in level:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"level must hold numbers in (0, 100), got {v!r} of type {type(v).__name__}")
        v = float(v)
        if not (0.0 < v < 100.0):
            raise ValueError(f"level must lie strictly between 0 and 100, got {v:g}")
        out.append(v)
    return sorted(set(out))


def _level_name(v):
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _season_from_offset(offset):
    """12 monthly, 4 quarterly, 7 daily, 1 otherwise (only for a multiple of 1)."""
    if offset is None or getattr(offset, "n", 1) != 1:
        return 1
    name = offset.rule_code  # ("name" is deprecated in pandas 3)
    if name.startswith(("M", "BM")):
        return 12
    if name.startswith(("Q", "BQ")):
        return 4
    if name == "D":
        return 7
    return 1


# ---------------------------------------------------------------------------------- data


class _Panel:
    """Series in a common, checked form.

    Attributes
    ----------
    keys : list
        Keys (dict), indices (list) or ``unique_id`` values (DataFrame), in order.
    values : list of ndarray, shape (n_i,)
        Finite float64 values.
    source : {"dict", "list", "frame"}
    dates : None or dict
        For a DataFrame: ``kind`` ("datetime" or "int"), ``freq`` (pandas offset or int step),
        ``start`` (list of first dates), ``ordinal0`` (list of int season ordinals of the first
        value, or None when the frequency has none).
    """

    def __init__(self, keys, values, source, dates=None):
        self.keys, self.values, self.source, self.dates = keys, values, source, dates

    def subset(self, stops):
        """The panel with series ``i`` cut to ``values[i][:stops[i]]`` (entries of 0 dropped)."""
        keep = [i for i, s in enumerate(stops) if s > 0]
        dates = None
        if self.dates is not None:
            dates = {**self.dates, "start": [self.dates["start"][i] for i in keep],
                     "ordinal0": None if self.dates["ordinal0"] is None else [self.dates["ordinal0"][i] for i in keep]}
        return _Panel([self.keys[i] for i in keep], [self.values[i][: stops[i]] for i in keep], self.source, dates)


def _as_panel(data, name="data"):
    if isinstance(data, _Panel):
        return data
    if _is_frame(data):
        return _frame_panel(data, name)
    if isinstance(data, dict):
        if not data:
            raise ValueError(f"{name} must hold at least one series, got an empty dict")
        keys = list(data)
        source = "dict"
    elif isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} must hold at least one series, got an empty list")
        keys = list(range(len(data)))
        data = dict(enumerate(data))
        source = "list"
    else:
        raise TypeError(
            f"{name} must be a pandas DataFrame (unique_id, ds, y), a dict of 1-D arrays or a list of "
            f"1-D arrays, got {type(data).__name__}"
        )
    values = []
    for key in keys:
        where = f"{name}[{key!r}]"
        arr = check.as_float_array(data[key], where, np.float64)
        if arr.ndim != 1:
            raise ValueError(f"{where} must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{where} is an empty series: every series needs at least one value")
        values.append(arr)
    return _Panel(keys, values, source)



def _infer_offset(pd, index):
    """``pandas.infer_freq(index)`` as an offset, or None: the same on pandas 2 (which returns a
    string) and on pandas 3, which warns that it will return an offset unless asked to already."""
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            freq = pd.infer_freq(index)
    except (KeyError, AttributeError):  # pandas without the option (OptionError is both)
        freq = pd.infer_freq(index)
    return None if freq is None else pd.tseries.frequencies.to_offset(freq)

def _frame_panel(df, name):
    pd = _pandas()
    missing = [c for c in ("unique_id", "ds", "y") if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}: a long DataFrame needs columns unique_id, ds, y")
    if len(df) == 0:
        raise ValueError(f"{name} is an empty DataFrame: every series needs at least one value")
    if not pd.api.types.is_numeric_dtype(df["y"]) or pd.api.types.is_bool_dtype(df["y"]):
        raise TypeError(f"column 'y' of {name} must be numeric, got dtype {df['y'].dtype}")
    if df["unique_id"].isna().any():
        raise ValueError(f"column 'unique_id' of {name} has missing values")
    ds = df["ds"]
    if pd.api.types.is_datetime64_any_dtype(ds):
        kind = "datetime"
        if ds.isna().any():
            raise ValueError(f"column 'ds' of {name} has missing dates")
    elif pd.api.types.is_integer_dtype(ds) and not pd.api.types.is_bool_dtype(ds):
        kind = "int"
    else:
        raise TypeError(f"column 'ds' of {name} must hold datetimes or integers, got dtype {ds.dtype}")
    frame = pd.DataFrame({"unique_id": df["unique_id"].to_numpy(), "ds": ds.to_numpy(),
                          "y": df["y"].to_numpy(dtype=np.float64, na_value=np.nan)})
    bad = ~np.isfinite(frame["y"].to_numpy())
    if bad.any():
        ids = pd.unique(frame["unique_id"][bad])[:5].tolist()
        raise ValueError(f"column 'y' of {name} has NaN or inf for unique_id {ids}")
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")  # unsorted input is sorted
    dup = frame.duplicated(["unique_id", "ds"])
    if dup.any():
        rows = frame.loc[dup, ["unique_id", "ds"]].head(3).to_records(index=False).tolist()
        raise ValueError(f"{name} has duplicate (unique_id, ds) rows: {rows}")
    # one sort, then split the columns at the group boundaries (no per-series pandas groups)
    uid = frame["unique_id"].to_numpy()
    codes, uniques = pd.factorize(uid, sort=False)
    cut = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    bounds = np.concatenate([[0], cut, [len(codes)]])
    keys = [k.item() if isinstance(k, np.generic) else k for k in uid[bounds[:-1]]]
    yv = frame["y"].to_numpy(dtype=np.float64)
    dv = frame["ds"].to_numpy()
    values = np.split(yv.copy(), cut)
    dss = np.split(dv, cut)
    sizes = np.diff(bounds)
    longest = int(np.argmax(sizes))
    if kind == "datetime":
        index = pd.DatetimeIndex(dss[longest])
        if len(index) >= 3:
            offset = _infer_offset(pd, index)
            if offset is None:
                raise ValueError(
                    f"column 'ds' of {name} is irregular for unique_id {keys[longest]!r}: pandas cannot infer a "
                    "frequency from its dates (expected evenly spaced dates)"
                )
        elif len(index) == 2:
            offset = pd.tseries.frequencies.to_offset(index[1] - index[0])
        else:
            raise ValueError(f"{name}: cannot infer the frequency of 'ds': every series has a single date")
        # every series must be evenly spaced at the offset: compare with one common date grid
        # (vectorised: the position of each row's date on the grid minus its start's position)
        index = pd.DatetimeIndex(dv)
        step = np.arange(len(dv)) - np.repeat(bounds[:-1], sizes)  # position within its series
        if isinstance(offset, pd.offsets.Tick):  # fixed width: integer arithmetic on nanoseconds
            i8 = index.asi8
            since = i8 - np.repeat(i8[bounds[:-1]], sizes)
            width = pd.Timedelta(offset).value
            bad = (since % width != 0) | (since // width != step)
        else:  # calendar offsets: positions on one common grid of dates
            grid = pd.date_range(start=index[bounds[:-1]].min(), end=index.max(), freq=offset)
            where = grid.get_indexer(index)
            bad = (where < 0) | (where - np.repeat(where[bounds[:-1]], sizes) != step)
        first = index[bounds[:-1]]
        if bad.any():
            key = keys[int(np.searchsorted(bounds, np.flatnonzero(bad)[0], side="right")) - 1]
            raise ValueError(
                f"column 'ds' of {name} is irregular for unique_id {key!r}: its dates are not evenly spaced at "
                f"the inferred frequency {offset.freqstr!r} (missing or extra dates)"
            )
        starts = list(first)
        ordinal0 = _ordinals(starts, offset)
        freq = offset
    else:
        d = dss[longest].astype(np.int64)
        step = int(d[1] - d[0]) if len(d) >= 2 else 1
        dints = dv.astype(np.int64)
        diffs = np.diff(dints)
        within = np.ones(len(diffs), dtype=bool)
        within[cut - 1] = False  # a difference across two series is not a step
        bad = within & (diffs != step)
        if bad.any():
            key = keys[int(np.searchsorted(bounds, np.flatnonzero(bad)[0], side="right")) - 1]
            raise ValueError(
                f"column 'ds' of {name} is irregular for unique_id {key!r}: its integer dates are not evenly "
                f"spaced by {step} (the step of the longest series)"
            )
        starts = [int(v) for v in dints[bounds[:-1]]]
        ordinal0 = [s // step for s in starts]
        freq = step
    return _Panel(keys, values, "frame", {"kind": kind, "freq": freq, "start": starts, "ordinal0": ordinal0})


def _ordinals(starts, offset):
    """Season ordinals of the first dates (months since year 0, quarters, or whole periods since
    1970 for fixed-length frequencies); None when the frequency has no such count."""
    pd = _pandas()
    name = offset.rule_code  # ("name" is deprecated in pandas 3)
    if offset.n == 1 and name.startswith(("M", "BM")):
        return [t.year * 12 + t.month - 1 for t in starts]
    if offset.n == 1 and name.startswith(("Q", "BQ")):
        return [t.year * 4 + (t.month - 1) // 3 for t in starts]
    if isinstance(offset, pd.offsets.Tick):
        width = pd.Timedelta(offset).value
        epoch = pd.Timestamp("1970-01-01", tz=starts[0].tz).value
        return [(t.value - epoch) // width for t in starts]
    return None


def _future_dates(dates, i, n, horizon):
    """The ``horizon`` dates after series ``i``'s ``n`` values."""
    if dates["kind"] == "datetime":
        pd = _pandas()
        index = pd.date_range(start=dates["start"][i], periods=n + horizon, freq=dates["freq"])
        return index[n:].to_numpy()
    return dates["start"][i] + dates["freq"] * np.arange(n, n + horizon, dtype=np.int64)


def _all_dates(dates, i, n):
    if dates["kind"] == "datetime":
        pd = _pandas()
        return pd.date_range(start=dates["start"][i], periods=n, freq=dates["freq"]).to_numpy()
    return dates["start"][i] + dates["freq"] * np.arange(n, dtype=np.int64)


# ---------------------------------------------------------------------------------- normalisation


def _normalise(y, transform):
    """``(z / s, log, s)`` for one series (see the module docstring, steps 1-2)."""
    log = transform == "auto" and bool(np.all(y > 0))
    z = np.log(y) if log else y
    s = float(np.mean(np.abs(np.diff(z)))) if z.size > 1 else 0.0
    if not (s > 0 and math.isfinite(s)):
        s = float(np.std(z)) if z.size > 1 else 0.0
    if not (s > 0 and math.isfinite(s)):
        big = float(np.max(np.abs(z)))
        s = 0.01 if log else (0.01 * big if big > 0 else 1.0)
    return z / s, log, s


class _Packed:
    """Normalised series concatenated: ``zn[off[i] : off[i] + n[i]]`` is series ``i``."""

    def __init__(self, zs, ordinal0):
        self.n = np.array([len(z) for z in zs], dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(self.n)[:-1]]).astype(np.int64)
        self.zn = np.concatenate(zs) if zs else np.zeros(0)
        self.ordinal0 = None if ordinal0 is None else np.asarray(ordinal0, dtype=np.int64)


def _batch(packed, series, origin, lookback, horizon, season, calendar, dtype, with_target=True):
    """Windows for (series, origin) pairs.

    Parameters
    ----------
    series, origin : ndarray of int, shape (B,)
        Series index and forecast origin ``t`` (index of the first forecast step), ``t >= 1``.

    Returns
    -------
    x : ndarray, shape (lookback, B, 1 + 2c)
        Right-padded inputs (``c`` = 1 with calendar features, else 0).
    lengths : ndarray of int64, shape (B,)
    future : ndarray, shape (B, 2c * horizon)
        Calendar features of the forecast steps.
    target : ndarray, shape (B, horizon) or None
    base : ndarray, shape (B, horizon)
        What the network's output is added to: the normalised level ``z[t - 1] / s`` plus the
        seasonal-naive anchor ``a_k``.
    """
    b = len(series)
    off = packed.off[series]
    length = np.minimum(origin, lookback)
    j = np.arange(lookback)
    pos = origin[:, None] - length[:, None] + j[None, :]  # series index of input step j
    valid = j[None, :] < length[:, None]
    level = packed.zn[off + origin - 1]
    vals = np.where(valid, packed.zn[off[:, None] + np.where(valid, pos, 0)] - level[:, None], 0.0)
    c = 1 if calendar else 0
    x = np.zeros((lookback, b, 1 + 2 * c))
    x[:, :, 0] = vals.T
    future = np.zeros((b, 2 * c * horizon))
    if c:
        ordinal = packed.ordinal0[series]
        angle = 2 * np.pi * (((ordinal[:, None] + pos) % season) / season)
        x[:, :, 1] = np.where(valid, np.sin(angle), 0.0).T
        x[:, :, 2] = np.where(valid, np.cos(angle), 0.0).T
        fa = 2 * np.pi * (((ordinal[:, None] + origin[:, None] + np.arange(horizon)[None, :]) % season) / season)
        future = np.concatenate([np.sin(fa), np.cos(fa)], axis=1)
    k = np.arange(horizon)
    # the seasonal anchor (ES-RNN style): the mean of the last season relative to the level plus the
    # seasonal profile averaged over the last J <= 3 whole seasons in the window, each taken
    # relative to its own mean,  a_k = (zbar_1 - level) + mean_j (z[t - j m + (k mod m)] - zbar_j);
    # 0 (the naive level) for m = 1 or windows shorter than a season.  The network models u_k - a_k.
    anchor = np.zeros((b, horizon))
    if season > 1:
        n_seasons = np.minimum(length // season, 3)
        profile = np.zeros((b, horizon))
        last_mean = np.zeros(b)
        i_m = np.arange(season)
        for jj in range(1, 4):
            use = n_seasons >= jj
            if not use.any():
                break
            rows = np.where(use[:, None], (origin - jj * season)[:, None] + i_m[None, :], 0)
            seg = packed.zn[off[:, None] + rows]  # (B, m); unused rows read a series' first value
            seg_mean = seg.mean(axis=1)
            if jj == 1:
                last_mean = seg_mean
            profile += np.where(use[:, None], seg[:, k % season] - seg_mean[:, None], 0.0)
        have = n_seasons >= 1
        anchor = np.where(have[:, None], (last_mean - level)[:, None] + profile / np.maximum(n_seasons, 1)[:, None],
                          0.0)
    target = None
    if with_target:
        target = (packed.zn[off[:, None] + origin[:, None] + k[None, :]] - level[:, None] - anchor).astype(dtype)
    return (np.ascontiguousarray(x, dtype=dtype), length.astype(np.int64), future.astype(dtype), target,
            level[:, None] + anchor)


# ---------------------------------------------------------------------------------- network


def _net_specs(cell, n_inputs, n_future, horizon, hidden_size, num_layers, dtype):
    """:func:`numrnn.nn.module_spec` descriptions (less backend and seed) of a :class:`_GlobalNet`."""
    dtype = np.dtype(dtype).name
    rnn_type = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell]
    return {
        "rnn": {"type": rnn_type, "config": {"input_size": n_inputs, "hidden_size": hidden_size,
                                             "num_layers": num_layers, "bias": True, "bidirectional": False,
                                             "dtype": dtype}},
        "head": {"type": "Linear", "config": {"in_features": hidden_size + n_future, "out_features": 2 * horizon,
                                              "bias": True, "dtype": dtype}},
    }


class _GlobalNet(nn.Module):
    """Recurrent encoder over right-padded windows (``lengths``) + linear Gaussian head.

    ``forward(x, lengths, future)``: x (lookback, B, F), lengths (B,), future (B, P) ->
    (B, 2 * horizon): the horizon means followed by the horizon log-variances.
    """

    def __init__(self, specs, seeds):
        super().__init__()
        rnn, head = specs["rnn"], specs["head"]
        self.rnn = nn.module_from_spec({**rnn, "config": {**rnn["config"], "backend": "cpu", "seed": seeds[0]}})
        self.head = nn.module_from_spec({**head, "config": {**head["config"], "seed": seeds[1]}})
        self.is_lstm = rnn["type"] == "LSTM"
        self.params = {**{f"rnn.{k}": v for k, v in self.rnn.params.items()},
                       **{f"head.{k}": v for k, v in self.head.params.items()}}
        self.grads = {**{f"rnn.{k}": v for k, v in self.rnn.grads.items()},
                      **{f"head.{k}": v for k, v in self.head.grads.items()}}

    def forward(self, x, lengths, future):
        y, state = self.rnn(x, lengths=lengths)
        h_n = state[0] if self.is_lstm else state  # (L, B, H)
        last = h_n[-1]
        self._shape = (y.shape, h_n.shape)
        if future.shape[1]:
            last = np.concatenate([last, future], axis=1)
        return self.head(last)

    def backward(self, dy):
        d_last = self.head.backward(dy)
        y_shape, h_shape = self._shape
        dh = np.zeros(h_shape, dtype=d_last.dtype)
        dh[-1] = d_last[:, : h_shape[2]]
        self.rnn.backward(np.zeros(y_shape, dtype=d_last.dtype), (dh, None) if self.is_lstm else dh)

    def train(self, mode=True):
        super().train(mode)
        self.rnn.train(mode)
        self.head.train(mode)
        return self

    def zero_grad(self):
        self.rnn.zero_grad()
        self.head.zero_grad()


def _mixture_quantiles(mu, sigma, probs, iters=80):
    """Quantiles of equal-weight Gaussian mixtures by bisection of the CDF.

    Parameters
    ----------
    mu, sigma : ndarray, shape (M, ...)
        Member means and standard deviations.
    probs : sequence of float in (0, 1)

    Returns
    -------
    ndarray, shape (len(probs), ...)
    """
    from scipy.special import ndtr

    lo0 = np.min(mu - 12 * sigma, axis=0)
    hi0 = np.max(mu + 12 * sigma, axis=0)
    out = []
    for p in probs:
        lo, hi = lo0.copy(), hi0.copy()
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = np.mean(ndtr((mid[None] - mu) / sigma), axis=0) < p
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        out.append(0.5 * (lo + hi))
    return np.stack(out)


# ---------------------------------------------------------------------------------- the forecaster


class GlobalForecaster:
    r"""One recurrent forecaster for many series, with prediction intervals.

    See the module docstring (:mod:`numrnn.global_forecast`) for the model's equations.

    Parameters
    ----------
    horizon : int
        Steps forecast (all at once, direct multi-step).
    season_length : int or None, default None
        Season of the data; None infers it from the frequency of ``ds`` (12 monthly, 4 quarterly,
        7 daily, 1 otherwise, and 1 for arrays).  It sets the default lookback and the calendar
        features.
    lookback : int or None, default None
        Most past values a window reads; None means ``max(2 * horizon, 4 * season_length, 8)``
        (four seasons: 0.833 vs 0.858 gmean MASE ratio to seasonal naive on the 150-series synthetic
        panel and 0.703 vs 0.754 on 15 real monthly series, means over seeds 0-2, against three).
        Series (and early windows) with fewer values are right-padded (``lengths``).
    cell : {"lstm", "gru", "rnn"}, default "lstm"
    hidden_size : int, default 32
    num_layers : int, default 1
    seed : int or None, default 0
        Seed of the weights and the window draws (:func:`numrnn._validation.check_seed`); None
        draws one per fit, recorded in ``seed_``.
    ensemble : int, default 3
        Members with seeds spawned from ``seed``; the forecast distribution is their mixture.
    epochs : int, default 100
        Most epochs per member.
    steps_per_epoch : int, default 50
        Mini-batches per epoch.
    batch_size : int, default 64
        Windows per mini-batch.
    lr : float, default 3e-3
        Adam's learning rate.
    clip_norm : float or None, default 1.0
        Global gradient-norm clipping.
    patience : int, default 10
        Epochs without validation improvement before a member stops.
    calendar : bool, default True
        Season-position features (sin/cos) from ``ds`` when a DataFrame is given and
        ``season_length > 1``; arrays carry no dates and get none.
    transform : {"auto", "none"}, default "auto"
        "auto": model the log of every strictly positive series.
    dtype : {np.float32, np.float64}, default np.float32

    Attributes
    ----------
    season_length_, lookback_ : int
        The values used.
    calendar_ : bool
        Whether calendar features are used.
    seed_ : int
    history_ : list of dict
        Per member: ``train_loss``, ``val_loss`` (lists), ``best_epoch``, ``epochs_run``.
    unvalidated_ids_ : list
        Series trained on but too short (fewer than ``2 * horizon + 1`` values) for a validation
        window.
    untrained_ids_ : list
        Series too short to train on (at most ``horizon`` values); they are still forecast.

    Notes
    -----
    The recurrent kernels run on the CPU (``backend="cpu"``), one thread.
    """

    def __init__(
        self,
        horizon,
        season_length=None,
        lookback=None,
        cell="lstm",
        hidden_size=32,
        num_layers=1,
        seed=0,
        *,
        ensemble=3,
        epochs=100,
        steps_per_epoch=50,
        batch_size=64,
        lr=3e-3,
        clip_norm=1.0,
        patience=10,
        calendar=True,
        transform="auto",
        dtype=np.float32,
    ):
        self.horizon = check.check_int(horizon, "horizon", 1)
        self.season_length = check.check_int(season_length, "season_length", 1, allow_none=True)
        self.lookback = check.check_int(lookback, "lookback", 1, allow_none=True)
        self.cell = check.check_choice(cell, "cell", _CELLS)
        self.hidden_size = check.check_int(hidden_size, "hidden_size", 1)
        self.num_layers = check.check_int(num_layers, "num_layers", 1)
        self.seed = None if seed is None else check.check_seed(seed, "seed")
        self.ensemble = check.check_int(ensemble, "ensemble", 1)
        self.epochs = check.check_int(epochs, "epochs", 1)
        self.steps_per_epoch = check.check_int(steps_per_epoch, "steps_per_epoch", 1)
        self.batch_size = check.check_int(batch_size, "batch_size", 1)
        self.lr = check.check_positive_float(lr, "lr")
        self.clip_norm = check.check_positive_float(clip_norm, "clip_norm", allow_none=True)
        self.patience = check.check_int(patience, "patience", 1)
        self.calendar = check.check_bool(calendar, "calendar")
        self.transform = check.check_choice(transform, "transform", _TRANSFORMS)
        self.dtype = check.check_dtype(dtype)
        self._fitted = None

    # ------------------------------------------------------------------ parameters

    def get_params(self):
        """Constructor arguments as a JSON-able dict."""
        return {name: (self.dtype.name if name == "dtype" else getattr(self, name))
                for name in inspect.signature(GlobalForecaster).parameters}

    def __repr__(self):
        defaults = {k: p.default for k, p in inspect.signature(GlobalForecaster).parameters.items()}
        defaults["dtype"] = "float32"
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k) != v}
        return f"GlobalForecaster({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @property
    def is_fitted(self):
        return self._fitted is not None

    def _require_fitted(self, what):
        if self._fitted is None:
            raise RuntimeError(f"{what} needs a fitted GlobalForecaster: call fit() first")
        return self._fitted

    def __getattr__(self, name):
        if name in ("season_length_", "lookback_", "calendar_", "seed_", "history_", "unvalidated_ids_",
                    "untrained_ids_"):
            return self._require_fitted(name)[name[:-1]]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ fit

    def _settings(self, panel):
        season = self.season_length
        if season is None:
            season = _season_from_offset(panel.dates["freq"]) if panel.dates and panel.dates["kind"] == "datetime" else 1
        lookback = self.lookback or max(2 * self.horizon, 4 * season, 8)
        calendar = bool(self.calendar and season > 1 and panel.dates is not None and panel.dates["ordinal0"] is not None)
        return season, lookback, calendar

    def fit(self, data, progress=True):
        """Fit one model on every series of ``data``.

        Parameters
        ----------
        data : pandas.DataFrame, dict of array_like or list of array_like
            A long DataFrame with columns ``unique_id``, ``ds`` (datetimes or integers, evenly
            spaced per series; rows in any order) and ``y``; or 1-D arrays of any lengths.  Every
            value finite; every series at least one value; at least one series with more than
            ``horizon`` values.
        progress : bool, default True
            One tqdm bar for the whole fit (member, epoch, validation loss).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            For bad input, naming the column or key (missing columns, duplicate ``(unique_id,
            ds)`` rows, irregular dates, NaN/inf, empty series, no series longer than
            ``horizon``).  A fit that raises leaves the forecaster as it was.
        FloatingPointError
            If the training loss or the weights become non-finite (lower ``lr``).
        """
        progress = check.check_bool(progress, "progress")
        panel = _as_panel(data)
        season, lookback, calendar = self._settings(panel)
        h = self.horizon
        packs, logs, scales = [], [], []
        train_n, validated = [], []
        for y in panel.values:
            n = len(y)
            val = n >= 2 * h + 1
            n_tr = n - h if val else n
            _, log, s = _normalise(y[:n_tr], self.transform)
            log = log and bool(np.all(y > 0))
            z = np.log(y) if log else y
            packs.append(z / s)
            logs.append(log)
            scales.append(s)
            train_n.append(n_tr)
            validated.append(val)
        train_n = np.array(train_n)
        trainable = np.flatnonzero(train_n >= h + 1)
        if trainable.size == 0:
            raise ValueError(
                f"no series can serve horizon={h}: training needs a series with at least horizon + 1 = {h + 1} "
                f"values, the longest has {max(len(v) for v in panel.values)}"
            )
        packed = _Packed(packs, panel.dates["ordinal0"] if calendar else None)
        if not np.isfinite(packed.zn).all():
            raise ValueError("the series' values are too large to normalise (near the float64 limit?)")
        seed = check.check_seed(self.seed, "seed")
        val_idx = np.flatnonzero(validated)
        if val_idx.size > _MAX_VALIDATION:  # a fixed, seeded subsample: validation cost stays bounded
            pick = np.random.default_rng(seed).choice(val_idx.size, _MAX_VALIDATION, replace=False)
            val_idx = val_idx[np.sort(pick)]
        validation = None
        if val_idx.size:
            validation = _batch(packed, val_idx, packed.n[val_idx] - h, lookback, h, season, calendar, self.dtype)
        specs = _net_specs(self.cell, 1 + 2 * calendar, 2 * calendar * h, h, self.hidden_size, self.num_layers,
                           self.dtype)
        members, history = self._train(packed, trainable, train_n, validation, specs, lookback, season, calendar,
                                       seed, progress)
        self._fitted = {
            "members": members, "specs": specs, "panel": panel, "season_length": season, "lookback": lookback,
            "calendar": calendar, "seed": seed, "history": history,
            "unvalidated_ids": [panel.keys[i] for i in range(len(panel.keys)) if not validated[i] and train_n[i] >= h + 1],
            "untrained_ids": [panel.keys[i] for i in range(len(panel.keys)) if train_n[i] < h + 1],
        }
        return self

    def _train(self, packed, trainable, train_n, validation, specs, lookback, season, calendar, seed, progress):
        h = self.horizon
        loss = GaussianNLLLoss()
        children = np.random.SeedSequence(seed).spawn(self.ensemble)
        members, history = [], []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.ensemble * self.epochs, desc="GlobalForecaster", leave=False)
        # origins t in [1, train_n - h] for each trainable series
        n_origins = train_n[trainable] - h
        try:
            with limit_threads(1), np.errstate(**_QUIET):
                for j, child in enumerate(children):
                    init_rnn, init_head, draw = (int(s) for s in child.generate_state(3))
                    net = _GlobalNet(specs, (init_rnn, init_head))
                    opt = Adam(lr=self.lr)
                    rng = np.random.default_rng(draw)
                    hist = {"train_loss": [], "val_loss": [], "best_epoch": -1, "best_val_loss": math.inf,
                            "epochs_run": 0}
                    best, waited = None, 0
                    for epoch in range(self.epochs):
                        net.train()
                        total = 0.0
                        for _ in range(self.steps_per_epoch):
                            pick = rng.integers(0, trainable.size, self.batch_size)
                            series = trainable[pick]
                            origin = 1 + np.floor(rng.random(self.batch_size) * n_origins[pick]).astype(np.int64)
                            x, lengths, future, target, _ = _batch(packed, series, origin, lookback, h, season,
                                                                   calendar, self.dtype)
                            net.zero_grad()
                            value, grad = loss(net(x, lengths, future), target)
                            if not math.isfinite(value):
                                raise FloatingPointError(
                                    f"training diverged: the loss of member {j + 1}/{self.ensemble} became {value} at "
                                    f"epoch {epoch}; lower lr (got {self.lr:g})"
                                )
                            net.backward(grad)
                            if self.clip_norm is not None:
                                clip_grad_norm(net.grads, self.clip_norm)
                            opt.step(net.params, net.grads)
                            total += value
                        hist["train_loss"].append(total / self.steps_per_epoch)
                        hist["epochs_run"] = epoch + 1
                        postfix = {"member": f"{j + 1}/{self.ensemble}", "epoch": epoch + 1}
                        if validation is not None:
                            net.eval()
                            val_loss = self._val_loss(net, loss, validation)
                            hist["val_loss"].append(val_loss)
                            postfix["val"] = f"{val_loss:.4g}"
                            if val_loss < hist["best_val_loss"]:
                                hist["best_val_loss"], hist["best_epoch"] = val_loss, epoch
                                best, waited = net.state_dict(), 0
                            else:
                                waited += 1
                        if bar is not None:
                            bar.set_postfix(postfix, refresh=False)
                            bar.update(1)
                        if validation is not None and waited >= self.patience:
                            break
                    if bar is not None:
                        bar.update(self.epochs - hist["epochs_run"])
                    if best is not None:
                        net.load_state_dict(best)
                    else:
                        hist["best_epoch"] = hist["epochs_run"] - 1
                    net.eval()
                    if not all(np.isfinite(p).all() for p in net.params.values()):
                        raise FloatingPointError(
                            f"training diverged: the weights of member {j + 1}/{self.ensemble} are not finite; "
                            f"lower lr (got {self.lr:g})"
                        )
                    members.append(net)
                    history.append(hist)
        finally:
            if bar is not None:
                bar.close()
        return members, history

    @staticmethod
    def _val_loss(net, loss, validation, chunk=1024):
        x, lengths, future, target, _ = validation
        total, count = 0.0, 0
        for a in range(0, len(lengths), chunk):
            sl = slice(a, a + chunk)
            value, _ = loss(net(x[:, sl], lengths[sl], future[sl]), target[sl])
            total += value * (min(a + chunk, len(lengths)) - a)
            count += min(a + chunk, len(lengths)) - a
        return total / count

    # ------------------------------------------------------------------ predict

    def _distribution(self, fitted, panel, probs):
        """Quantiles (len(probs), S, h) in original units for every series of ``panel``."""
        h, lookback, season = self.horizon, fitted["lookback"], fitted["season_length"]
        calendar = fitted["calendar"]
        if calendar and (panel.dates is None or panel.dates["ordinal0"] is None):
            raise ValueError(
                "this model was fitted with calendar features: pass the history as a DataFrame with a 'ds' column "
                "of the same frequency"
            )
        packs, logs, scales = [], [], []
        for y in panel.values:
            zn, log, s = _normalise(y, self.transform)
            packs.append(zn)
            logs.append(log)
            scales.append(s)
        packed = _Packed(packs, panel.dates["ordinal0"] if calendar else None)
        series = np.arange(len(packs))
        x, lengths, future, _, level = _batch(packed, series, packed.n, lookback, h, season, calendar, self.dtype,
                                              with_target=False)
        mus, sigmas = [], []
        with limit_threads(1), np.errstate(**_QUIET):
            for net in fitted["members"]:
                net.eval()
                outs = []
                for a in range(0, len(series), 1024):
                    sl = slice(a, a + 1024)
                    outs.append(np.asarray(net(x[:, sl], lengths[sl], future[sl]), dtype=np.float64))
                out = np.concatenate(outs)
                mus.append(out[:, :h])
                sigmas.append(np.exp(0.5 * np.clip(out[:, h:], -30.0, 30.0)))
            q = _mixture_quantiles(np.stack(mus), np.stack(sigmas), probs)  # (P, S, h)
            scale = np.array(scales)[None, :, None]
            zq = (q + level[None]) * scale
            log = np.array(logs)
            out = np.where(log[None, :, None], np.exp(zq), zq)
        if not np.isfinite(out).all():
            bad = [panel.keys[i] for i in np.flatnonzero(~np.isfinite(out).all(axis=(0, 2)))][:5]
            raise FloatingPointError(f"the forecasts of series {bad} are not finite (the series' range is too wide)")
        return out

    def predict(self, data=None, level=None):
        """Forecast the ``horizon`` values after the end of every series.

        Parameters
        ----------
        data : DataFrame, dict or list, optional
            New histories in one of :meth:`fit`'s formats (series unseen in training are forecast
            from their own history, with no refit); None forecasts the series of the fit.
        level : number or list of numbers in (0, 100), optional
            Central prediction-interval levels in percent.

        Returns
        -------
        pandas.DataFrame or dict or list
            For a DataFrame: columns ``unique_id``, ``ds`` (the future dates), ``yhat`` and, per
            level L, ``yhat-lo-L``, ``yhat-hi-L`` (``horizon`` rows per series).  For a dict: ``{key:
            {"yhat": (h,), "lo-L": (h,), "hi-L": (h,)}}``; for a list, a list of such dicts.

        Raises
        ------
        RuntimeError
            If not fitted.
        TypeError, ValueError
            For bad input or a level outside (0, 100).
        """
        fitted = self._require_fitted("predict()")
        levels = _check_levels(level)
        panel = fitted["panel"] if data is None else _as_panel(data)
        probs = [0.5]
        for lv in levels:
            probs += [0.5 - lv / 200.0, 0.5 + lv / 200.0]
        q = self._distribution(fitted, panel, probs)
        return self._format(panel, q, levels)

    def _format(self, panel, q, levels):
        h = self.horizon
        if panel.source == "frame":
            pd = _pandas()
            s = len(panel.keys)
            cols = {"unique_id": np.repeat(np.array(panel.keys, dtype=object), h),
                    "ds": np.concatenate([_future_dates(panel.dates, i, len(panel.values[i]), h) for i in range(s)]),
                    "yhat": q[0].reshape(-1)}
            for k, lv in enumerate(levels):
                cols[f"yhat-lo-{_level_name(lv)}"] = q[1 + 2 * k].reshape(-1)
                cols[f"yhat-hi-{_level_name(lv)}"] = q[2 + 2 * k].reshape(-1)
            return pd.DataFrame(cols)
        out = {}
        for i, key in enumerate(panel.keys):
            d = {"yhat": q[0, i].copy()}
            for k, lv in enumerate(levels):
                d[f"lo-{_level_name(lv)}"] = q[1 + 2 * k, i].copy()
                d[f"hi-{_level_name(lv)}"] = q[2 + 2 * k, i].copy()
            out[key] = d
        return [out[k] for k in panel.keys] if panel.source == "list" else out

    # ------------------------------------------------------------------ cross-validation

    def cross_validation(self, data, n_windows=3, step_size=None, level=None, progress=False):
        """Rolling-origin evaluation over all series: refit a copy per window and forecast.

        Window ``w`` (``0 .. n_windows - 1``) cuts each series of n values at
        ``cutoff = n - horizon - (n_windows - 1 - w) * step_size``, fits a fresh copy of this
        forecaster (same parameters; ``self`` is not modified) on the cut panel and forecasts the
        next ``horizon`` values.  Series too short for a window (cut below one value) sit it out.

        Parameters
        ----------
        data : DataFrame, dict or list
        n_windows : int, default 3
        step_size : int, optional
            Distance between cutoffs; default ``horizon``.
        level : number or list, optional
        progress : bool, default False

        Returns
        -------
        pandas.DataFrame or dict of ndarray
            Columns ``unique_id``, ``ds``, ``cutoff`` (the last date seen; positions for arrays),
            ``y``, ``yhat`` and ``yhat-lo-L``/``yhat-hi-L`` per level: a DataFrame for a
            DataFrame, else a dict of equal-length 1-D arrays (``ds`` and ``cutoff`` positions).
        """
        n_windows = check.check_int(n_windows, "n_windows", 1)
        h = self.horizon
        step_size = h if step_size is None else check.check_int(step_size, "step_size", 1)
        levels = _check_levels(level)
        panel = _as_panel(data)
        pieces = []
        for w in range(n_windows):
            back = h + (n_windows - 1 - w) * step_size
            cut = [len(v) - back for v in panel.values]
            part = panel.subset([max(c, 0) for c in cut])
            if not part.keys:
                raise ValueError(f"cross-validation window {w} leaves no series: every series has at most {back} values")
            model = GlobalForecaster(**self.get_params())
            model.fit(part, progress=progress)
            q = model._distribution(model._fitted, part, [0.5] + [p for lv in levels for p in (0.5 - lv / 200, 0.5 + lv / 200)])
            index = {k: i for i, k in enumerate(panel.keys)}
            for s, key in enumerate(part.keys):
                i = index[key]
                c = len(part.values[s])
                truth = panel.values[i][c : c + h]
                m = len(truth)
                if panel.dates is not None:
                    dates = _all_dates(panel.dates, i, len(panel.values[i]))
                    ds, cutoff = dates[c : c + m], np.repeat(dates[c - 1], m)
                else:
                    ds, cutoff = np.arange(c, c + m), np.repeat(c - 1, m)
                row = {"unique_id": [key] * m, "ds": ds, "cutoff": cutoff, "y": truth, "yhat": q[0, s, :m]}
                for k, lv in enumerate(levels):
                    row[f"yhat-lo-{_level_name(lv)}"] = q[1 + 2 * k, s, :m]
                    row[f"yhat-hi-{_level_name(lv)}"] = q[2 + 2 * k, s, :m]
                pieces.append(row)
        cols = {k: np.concatenate([np.asarray(p[k], dtype=object if k == "unique_id" else None) for p in pieces])
                for k in pieces[0]}
        if panel.source == "frame":
            return _pandas().DataFrame(cols)
        return cols

    # ------------------------------------------------------------------ save / load

    def save(self, path):
        """Write the fitted forecaster (weights, settings, the training series) to ``path``.

        Atomic and pickle-free (:func:`numrnn.io.save_npz`).  Series keys must be str or int.
        """
        fitted = self._require_fitted("save()")
        panel = fitted["panel"]
        keys = []
        for k in panel.keys:
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, numbers.Integral)):
                raise TypeError(f"save() needs str or int series keys (unique_id), got {k!r} of type {type(k).__name__}")
            keys.append(k if isinstance(k, str) else int(k))
        arrays = {"data/values": np.concatenate(panel.values),
                  "data/lengths": np.array([len(v) for v in panel.values], dtype=np.int64)}
        for j, net in enumerate(fitted["members"]):
            for name, value in net.state_dict().items():
                arrays[f"member{j}/{name}"] = value
        dates = None
        if panel.dates is not None:
            d = panel.dates
            dt = d["kind"] == "datetime"
            dates = {"kind": d["kind"], "freq": d["freq"].freqstr if dt else int(d["freq"]),
                     "start": [t.isoformat() for t in d["start"]] if dt else [int(s) for s in d["start"]],
                     "ordinal0": None if d["ordinal0"] is None else [int(o) for o in d["ordinal0"]]}
        params = self.get_params()
        params["seed"] = int(fitted["seed"])
        config = {
            "params": params, "keys": keys, "source": panel.source, "dates": dates,
            "season_length": fitted["season_length"], "lookback": fitted["lookback"], "calendar": fitted["calendar"],
            "seed_used": int(fitted["seed"]),
            "history": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in h.items()}
                        for h in fitted["history"]],
            "unvalidated": [keys[panel.keys.index(k)] for k in fitted["unvalidated_ids"]],
            "untrained": [keys[panel.keys.index(k)] for k in fitted["untrained_ids"]],
        }
        nio.save_npz(path, _KIND, config, arrays)

    @classmethod
    def load(cls, path):
        """Load a forecaster written by :meth:`save`; everything is checked before use.

        Raises
        ------
        FileNotFoundError
        ValueError
            ``"cannot load '<path>': ..."`` for a corrupt file or contents that do not fit its config.
        """
        config, arrays = nio.load_npz(path, kind=_KIND)
        where = f"cannot load {nio._check_path(path)!r}"
        try:
            gf, fitted = _from_saved(cls, config, arrays)
        except KeyError as exc:
            raise ValueError(f"{where}: the file lacks {exc}") from None
        except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            raise ValueError(f"{where}: its contents do not fit its configuration ({exc})") from None
        gf._fitted = fitted
        return gf


def _from_saved(cls, config, arrays):
    if not isinstance(config, dict):
        raise ValueError("the config must be a dict")
    params = dict(config["params"])
    if set(params) != set(inspect.signature(cls).parameters):
        raise ValueError("config['params'] does not hold the constructor's arguments")
    if params["dtype"] not in ("float32", "float64"):
        raise ValueError(f"config['params']['dtype'] must be 'float32' or 'float64', got {params['dtype']!r}")
    gf = cls(**params)
    seed = check.check_seed(config["seed_used"], "config['seed_used']")
    season = check.check_int(config["season_length"], "config['season_length']", 1)
    lookback = check.check_int(config["lookback"], "config['lookback']", 1)
    calendar = check.check_bool(config["calendar"], "config['calendar']")
    keys = config["keys"]
    if not isinstance(keys, list) or not keys:
        raise ValueError("config['keys'] must be a non-empty list")
    source = config["source"]
    if source not in ("dict", "list", "frame"):
        raise ValueError(f"config['source'] must be 'dict', 'list' or 'frame', got {source!r}")
    lengths = arrays.get("data/lengths")
    if lengths is None or lengths.dtype != np.int64 or lengths.shape != (len(keys),) or (lengths < 1).any():
        raise ValueError("array 'data/lengths' must hold one positive int64 per key")
    values = nio._expect(arrays, "data/values", (int(lengths.sum()),), "float64")
    if not np.isfinite(values).all():
        raise ValueError("array 'data/values' is not finite")
    splits = np.split(values, np.cumsum(lengths)[:-1])
    dates = config["dates"]
    if dates is not None:
        if not isinstance(dates, dict) or dates.get("kind") not in ("datetime", "int"):
            raise ValueError("config['dates'] must be null or a dict with kind 'datetime' or 'int'")
        if not isinstance(dates["start"], list) or len(dates["start"]) != len(keys):
            raise ValueError("config['dates']['start'] must hold one date per key")
        if dates["kind"] == "datetime":
            pd = _pandas()
            dates = {**dates, "freq": pd.tseries.frequencies.to_offset(dates["freq"]),
                     "start": [pd.Timestamp(s) for s in dates["start"]]}
        else:
            dates = {**dates, "freq": check.check_int(dates["freq"], "config['dates']['freq']", 1),
                     "start": [int(s) for s in dates["start"]]}
        if dates["ordinal0"] is not None:
            if not isinstance(dates["ordinal0"], list) or len(dates["ordinal0"]) != len(keys):
                raise ValueError("config['dates']['ordinal0'] must hold one int per key")
            dates["ordinal0"] = [int(o) for o in dates["ordinal0"]]
    if calendar and (dates is None or dates["ordinal0"] is None):
        raise ValueError("config['calendar'] is true but the file holds no season ordinals")
    h = gf.horizon
    specs = _net_specs(gf.cell, 1 + 2 * calendar, 2 * calendar * h, h, gf.hidden_size, gf.num_layers, gf.dtype)
    members, expected = [], {"data/values", "data/lengths"}
    for j in range(gf.ensemble):
        found = {}
        for part, spec in specs.items():
            found.update(nio._check_module(spec, arrays, f"member{j}/{part}."))
        if not all(np.isfinite(a).all() for a in found.values()):
            raise ValueError(f"the weights of member {j} are not finite")
        expected |= set(found)
        net = _GlobalNet(specs, (0, 0))
        net.load_state_dict({k[len(f"member{j}/"):]: v for k, v in found.items()})
        net.eval()
        members.append(net)
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise ValueError(f"unexpected arrays {unexpected[:5]}")
    history = config["history"]
    if not isinstance(history, list) or len(history) != gf.ensemble:
        raise ValueError(f"config['history'] must hold ensemble = {gf.ensemble} entries")
    history = [{**hh, "best_val_loss": math.inf if hh.get("best_val_loss") is None else hh["best_val_loss"]}
               for hh in history]
    panel = _Panel(list(keys), splits, source, dates)
    fitted = {"members": members, "specs": specs, "panel": panel, "season_length": season, "lookback": lookback,
              "calendar": calendar, "seed": seed, "history": history,
              "unvalidated_ids": list(config["unvalidated"]), "untrained_ids": list(config["untrained"])}
    return gf, fitted
