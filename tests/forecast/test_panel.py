"""Panel: pickled (as Dask sends it to workers) with its values in one buffer, and back unchanged."""

import pickle

import numpy as np

from numrnn.forecast.panel import Panel


def test_pickle_round_trip_keeps_keys_values_and_dates():
    rng = np.random.default_rng(0)
    values = [rng.normal(size=n) for n in (1, 7, 3, 12)]
    dates = {"kind": "int", "freq": 1, "start": [0, 5, 2, 9], "ordinal0": None}
    panel = Panel(["a", "b", "c", "d"], values, "frame", dates)
    back = pickle.loads(pickle.dumps(panel))
    assert back.keys == panel.keys and back.source == "frame" and back.dates == dates
    assert [v.dtype for v in back.values] == [np.float64] * 4
    for got, want in zip(back.values, values, strict=True):
        np.testing.assert_array_equal(got, want)
    empty = pickle.loads(pickle.dumps(Panel([], [], "list")))
    assert empty.keys == [] and empty.values == []
