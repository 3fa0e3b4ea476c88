"""Panel: pickled (as Dask sends it to workers) with its values (and regressors) in one buffer, and back
unchanged; the regressors of a DataFrame follow its sorted rows."""

import pickle

import numpy as np
import pytest

from numrnn.forecast.panel import Panel, as_panel


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


def test_pickle_round_trip_keeps_the_exogenous_regressors_and_subset_keeps_their_future():
    rng = np.random.default_rng(1)
    values = [rng.normal(size=n) for n in (3, 6)]
    exog = [rng.normal(size=(3, 2)), rng.normal(size=(6, 2))]
    dates = {"kind": "int", "freq": 1, "start": [0, 4], "ordinal0": None}
    panel = Panel(["a", "b"], values, "frame", dates, exog, ["promo", "price"])
    back = pickle.loads(pickle.dumps(panel))
    assert back.exog_names == ["promo", "price"]
    for got, want in zip(back.exog, exog, strict=True):
        np.testing.assert_array_equal(got, want)
    plain = pickle.loads(pickle.dumps(Panel(["a"], values[:1], "dict")))
    assert plain.exog is None and plain.exog_names == []
    # a cut keeps every regressor row: those after the cut are the cut series' known future
    cut = panel.subset([0, 4])
    assert cut.keys == ["b"] and len(cut.values[0]) == 4 and cut.exog_names == ["promo", "price"]
    np.testing.assert_array_equal(cut.exog[0], exog[1])


def test_frame_regressors_follow_the_sorted_rows():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"unique_id": ["b", "a", "b", "a", "a"], "ds": [2, 1, 1, 3, 2],
                       "y": [1.0, 2.0, 3.0, 4.0, 5.0], "x": [10.0, 20.0, 30.0, 40.0, 50.0], "flag": [True] * 5})
    panel = as_panel(df, exog=None)
    assert panel.keys == ["a", "b"] and panel.exog_names == ["x", "flag"]
    np.testing.assert_array_equal(panel.values[0], [2.0, 5.0, 4.0])
    np.testing.assert_array_equal(panel.exog[0], [[20.0, 1.0], [50.0, 1.0], [40.0, 1.0]])
    np.testing.assert_array_equal(panel.exog[1], [[30.0, 1.0], [10.0, 1.0]])
    assert as_panel(df).exog is None  # by default the extra columns are not read
    with pytest.raises(TypeError, match=r"\['note'\]"):
        as_panel(df.assign(note="n"), exog=None)
