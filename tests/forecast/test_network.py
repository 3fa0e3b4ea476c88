"""forecast.network.PaddedNet with a per-series table: the offsets, the mean row of unseen series,
and the table's gradient against central differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from numrnn.forecast.network import PaddedNet, encoder_head_specs

H, N_SERIES, FUTURE = 3, 5, 2


def net_and_batch(dtype=np.float64, n_series=N_SERIES):
    specs = encoder_head_specs("lstm", 1, 4, 1, FUTURE, 2 * H, dtype, n_series=n_series)
    net = PaddedNet(specs, (1, 2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 1)).astype(dtype)
    lengths = np.array([6, 3, 5, 1])
    future = rng.normal(size=(4, FUTURE)).astype(dtype)
    return net, x, lengths, future


def test_table_starts_at_zero_and_adds_each_series_row():
    net, x, lengths, future = net_and_batch()
    table = net.params["series.weight"]
    assert table.shape == (N_SERIES, 2 * H) and not table.any()
    plain = PaddedNet(encoder_head_specs("lstm", 1, 4, 1, FUTURE, 2 * H, np.float64), (1, 2))
    assert set(net.params) - set(plain.params) == {"series.weight"}
    ids = np.array([4, 0, 4, 2])
    np.testing.assert_array_equal(net(x, lengths, future, ids), plain(x, lengths, future))  # a zero table adds 0
    table[...] = np.random.default_rng(1).normal(size=table.shape)
    np.testing.assert_allclose(net(x, lengths, future, ids), plain(x, lengths, future) + table[ids], rtol=0,
                               atol=1e-15)
    # a series without a row (-1) takes the mean row
    out = net(x, lengths, future, np.array([-1, 0, -1, 2]))
    np.testing.assert_allclose(out[0], plain(x, lengths, future)[0] + table.mean(axis=0), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="pass ids"):
        net(x, lengths, future)


def test_table_gradient_matches_central_differences():
    net, x, lengths, future = net_and_batch()
    table = net.params["series.weight"]
    table[...] = np.random.default_rng(2).normal(size=table.shape)
    ids = np.array([3, 1, 3, -1])  # a repeated row, and an unseen series (no gradient to any row)
    weights = np.random.default_rng(3).normal(size=(4, 2 * H))

    def loss():
        return float(np.sum(weights * net(x, lengths, future, ids)))

    net.train()
    net.zero_grad()
    loss()
    net.backward(weights)
    grad = net.grads["series.weight"].copy()
    (numeric,) = naive.central_difference(loss, [table])
    # the unseen series' mean row is an inference rule: its window gives the table no gradient
    seen = weights.copy()
    seen[3] = 0
    expected = np.zeros_like(grad)
    np.add.at(expected, ids[:3], seen[:3])
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-12)
    mean_row = np.broadcast_to(0.2 * weights[3], (3, 2 * H))  # the mean row reads every row with weight 1/5
    np.testing.assert_allclose(numeric[[0, 2, 4]], mean_row, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(numeric[[1, 3]], expected[[1, 3]] + mean_row[:2], rtol=1e-6, atol=1e-9)
