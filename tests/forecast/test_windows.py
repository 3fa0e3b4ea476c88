"""forecast.windows.batch: inputs, lengths and the seasonal anchor against a slow per-window reference."""

from __future__ import annotations

import numpy as np
import pytest

from numrnn.forecast.windows import Packed, batch


def reference_window(z, t, lookback, horizon, season, most):
    """One window at origin ``t`` of the normalised series ``z``, written step by step.

    Returns (inputs relative to the level, length, target, base): the anchor is the last whole
    season's mean relative to the level plus the mean, over the last J = min(L // m, most) whole
    seasons, of each season's values relative to its own mean.
    """
    length = min(t, lookback)
    level = z[t - 1]
    inputs = np.zeros(lookback)
    for j in range(length):
        inputs[j] = z[t - length + j] - level
    anchor = np.zeros(horizon)
    seasons = min(length // season, most) if season > 1 else 0
    if seasons:
        last_mean = np.mean(z[t - season:t])
        for k in range(horizon):
            profile = 0.0
            for jj in range(1, seasons + 1):
                block = z[t - jj * season:t - (jj - 1) * season]
                profile += block[k % season] - np.mean(block)
            anchor[k] = last_mean - level + profile / seasons
    target = np.array([z[t + k] - level for k in range(horizon)]) - anchor
    return inputs, length, target, level + anchor


@pytest.mark.parametrize("anchor_seasons", [None, 3, 1, 0])
@pytest.mark.parametrize("season", [1, 4, 5])
def test_batch_matches_the_reference_window(season, anchor_seasons):
    rng = np.random.default_rng(season)
    zs = [rng.normal(size=n).cumsum() for n in (9, 31, 47)]  # shorter and longer than the lookback
    packed = Packed(zs, None)
    lookback, horizon = 23, 7  # 4 whole seasons of 5, 5 of 4: more than the legacy cap of 3
    series = np.array([0, 1, 1, 2, 2, 2, 1])
    origin = np.array([2, 5, 24, 1, 20, 40, 13])
    x, lengths, future, target, base = batch(packed, series, origin, lookback, horizon, season, False, np.float64,
                                             anchor_seasons=anchor_seasons)
    most = lookback // season if anchor_seasons is None else anchor_seasons
    assert x.shape == (lookback, len(series), 1) and future.shape == (len(series), 0)
    for b, (i, t) in enumerate(zip(series, origin)):
        inputs, length, tgt, bse = reference_window(zs[i], t, lookback, horizon, season, most)
        assert lengths[b] == length
        np.testing.assert_allclose(x[:, b, 0], inputs, rtol=0, atol=1e-12)
        np.testing.assert_allclose(target[b], tgt, rtol=0, atol=1e-12)
        np.testing.assert_allclose(base[b], bse, rtol=0, atol=1e-12)
