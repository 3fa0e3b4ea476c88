"""Training and forecast windows of the GlobalForecaster, drawn from a packed panel."""

from __future__ import annotations

import numpy as np

__all__ = ["LEGACY_ANCHOR_SEASONS", "Packed", "batch"]


class Packed:
    """Normalised series concatenated: ``zn[off[i] : off[i] + n[i]]`` is series ``i``.

    Parameters
    ----------
    zs : list of ndarray, shape (n_i,)
        The normalised series.
    ordinal0 : sequence of int or None
        Season ordinals of the series' first values (for the calendar features).
    exog : list of ndarray, shape (rows_i, m), optional
        The normalised exogenous regressors, ``rows_i >= n_i``: row ``t`` goes with step ``t`` of
        series ``i``, and the rows after ``n_i`` are its known future (a forecast at origin
        ``n_i`` needs ``rows_i >= n_i + horizon``).  Held as ``xn[xoff[i] + t]``, shape
        (sum of rows, m); ``xn`` is None without regressors.
    """

    def __init__(self, zs, ordinal0, exog=None):
        self.n = np.array([len(z) for z in zs], dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(self.n)[:-1]]).astype(np.int64)
        self.zn = np.concatenate(zs) if zs else np.zeros(0)
        self.ordinal0 = None if ordinal0 is None else np.asarray(ordinal0, dtype=np.int64)
        self.xn = self.xoff = None
        if exog is not None:
            rows = np.array([len(x) for x in exog], dtype=np.int64)
            self.xoff = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
            self.xn = np.ascontiguousarray(np.concatenate(exog), dtype=np.float64)

    @property
    def n_exog(self):
        """The number of exogenous regressors ``m`` (0 without)."""
        return 0 if self.xn is None else self.xn.shape[1]


#: The seasonal anchor's most seasons in a model fitted before the anchor read every whole season
#: of the window (files saved then carry no ``anchor_seasons``).
LEGACY_ANCHOR_SEASONS = 3


def batch(packed, series, origin, lookback, horizon, season, calendar, dtype, with_target=True, anchor_seasons=None):
    """Windows for (series, origin) pairs.

    Parameters
    ----------
    series, origin : ndarray of int, shape (B,)
        Series index and forecast origin ``t`` (index of the first forecast step), ``t >= 1``.
    anchor_seasons : int or None, default None
        The most whole seasons the seasonal anchor averages, :math:`J_{max}`; None: every whole
        season a full window holds, ``lookback // season``.

    Returns
    -------
    x : ndarray, shape (lookback, B, 1 + 2c + m)
        Right-padded inputs (``c`` = 1 with calendar features, else 0; ``m`` the packed panel's
        exogenous regressors): the value, the season's sin and cos, then the regressors.
    lengths : ndarray of int64, shape (B,)
    future : ndarray, shape (B, (2c + m) * horizon)
        Features of the forecast steps: the horizon sines, the horizon cosines, then each
        regressor's horizon values (``[x_{t, r}, ..., x_{t + h - 1, r}]`` for r = 1 .. m).
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
    m = packed.n_exog
    x = np.zeros((lookback, b, 1 + 2 * c + m))
    x[:, :, 0] = vals.T
    future = np.zeros((b, 2 * c * horizon))
    k = np.arange(horizon)
    if c:
        ordinal = packed.ordinal0[series]
        angle = 2 * np.pi * (((ordinal[:, None] + pos) % season) / season)
        x[:, :, 1] = np.where(valid, np.sin(angle), 0.0).T
        x[:, :, 2] = np.where(valid, np.cos(angle), 0.0).T
        fa = 2 * np.pi * (((ordinal[:, None] + origin[:, None] + k[None, :]) % season) / season)
        future = np.concatenate([np.sin(fa), np.cos(fa)], axis=1)
    if m:
        xoff = packed.xoff[series]
        past = packed.xn[xoff[:, None] + np.where(valid, pos, 0)]  # (B, lookback, m)
        x[:, :, 1 + 2 * c :] = np.where(valid[:, :, None], past, 0.0).transpose(1, 0, 2)
        ahead = packed.xn[xoff[:, None] + origin[:, None] + k[None, :]]  # (B, h, m)
        future = np.concatenate([future, ahead.transpose(0, 2, 1).reshape(b, m * horizon)], axis=1)
    # the seasonal anchor (ES-RNN style): the mean of the last season relative to the level plus the
    # seasonal profile averaged over the last J <= anchor_seasons whole seasons in the window, each
    # taken relative to its own mean,  a_k = (zbar_1 - level) + mean_j (z[t - j m + (k mod m)] - zbar_j);
    # 0 (the naive level) for m = 1 or windows shorter than a season.  The network models u_k - a_k.
    anchor = np.zeros((b, horizon))
    if season > 1:
        most = lookback // season if anchor_seasons is None else anchor_seasons
        n_seasons = np.minimum(length // season, most)
        profile = np.zeros((b, horizon))
        last_mean = np.zeros(b)
        i_m = np.arange(season)
        for jj in range(1, most + 1):
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
