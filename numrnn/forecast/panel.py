"""The GlobalForecaster's data: a panel of series in a checked, common form, and its dates.

:func:`as_panel` reads a long pandas DataFrame (``unique_id``, ``ds``, ``y``), a dict of 1-D
arrays or a list of them into a :class:`Panel`; the date helpers give the dates of a series and
of its forecast steps.  pandas is imported only when a DataFrame is passed or returned.
"""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check

__all__ = ["Panel", "all_dates", "as_panel", "exog_columns", "exog_rows", "future_dates", "future_exog", "is_frame",
           "level_name", "pandas", "season_from_offset"]

#: The columns of a long DataFrame that are not exogenous regressors.
KEY_COLUMNS = ("unique_id", "ds", "y")


def pandas():
    """The pandas module; ``ImportError`` naming the extra when it is not installed."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("this needs pandas (pip install 'numrnn[pandas]')") from None
    return pd


def is_frame(data):
    """Whether ``data`` is a pandas DataFrame, without importing pandas when it is not loaded."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def season_from_offset(offset):
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


class Panel:
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
    exog_names : list of str
        The exogenous regressors' column names (empty: none).
    exog : None or list of ndarray, shape (n_i + f_i, m)
        Finite float64 values of the ``m`` regressors at each series' dates; the first ``n_i``
        rows go with ``values[i]``, the ``f_i >= 0`` rows after them are the regressors' known
        future (rows a :meth:`subset` cut off).  None without regressors.
    """

    def __init__(self, keys, values, source, dates=None, exog=None, exog_names=()):
        self.keys, self.values, self.source, self.dates = keys, values, source, dates
        self.exog, self.exog_names = exog, list(exog_names)

    def __getstate__(self):
        """Pickled with the values as one array and their lengths: one buffer instead of one per
        series (sending 10,000 series to a Dask worker cost 0.09 s of pickling series by series);
        the regressors likewise, as one (sum of rows, m) array and their row counts."""
        lengths = np.array([len(v) for v in self.values], dtype=np.int64)
        flat = np.concatenate(self.values) if self.values else np.zeros(0)
        state = {"keys": self.keys, "flat": flat, "lengths": lengths, "source": self.source, "dates": self.dates,
                 "exog_names": self.exog_names, "exog": None, "exog_rows": None}
        if self.exog is not None:
            state["exog_rows"] = np.array([len(e) for e in self.exog], dtype=np.int64)
            state["exog"] = (np.concatenate(self.exog) if self.exog else np.zeros((0, len(self.exog_names))))
        return state

    def __setstate__(self, state):
        ends = np.cumsum(state["lengths"])
        flat = state["flat"]
        self.keys, self.source, self.dates = state["keys"], state["source"], state["dates"]
        self.values = [flat[e - n : e] for e, n in zip(ends.tolist(), state["lengths"].tolist())]
        self.exog_names = list(state.get("exog_names", ()))  # (pickles of older versions have none)
        self.exog = None
        if state.get("exog") is not None:
            rows, xflat = state["exog_rows"], state["exog"]
            self.exog = [xflat[e - n : e] for e, n in zip(np.cumsum(rows).tolist(), rows.tolist())]

    def subset(self, stops):
        """The panel with series ``i`` cut to ``values[i][:stops[i]]`` (entries of 0 dropped).

        The regressors keep all their rows: those after the cut are the known future of the cut
        series (what a rolling-origin evaluation forecasts with).
        """
        keep = [i for i, s in enumerate(stops) if s > 0]
        dates = None
        if self.dates is not None:
            dates = {**self.dates, "start": [self.dates["start"][i] for i in keep],
                     "ordinal0": None if self.dates["ordinal0"] is None else [self.dates["ordinal0"][i] for i in keep]}
        exog = None if self.exog is None else [self.exog[i] for i in keep]
        return Panel([self.keys[i] for i in keep], [self.values[i][: stops[i]] for i in keep], self.source, dates,
                     exog, self.exog_names)


def as_panel(data, name="data", exog=()):
    """``data`` as a checked :class:`Panel`.

    Parameters
    ----------
    data : Panel, pandas.DataFrame, dict of array_like or list of array_like
        A Panel is returned as it is.
    name : str
        The argument's name, for the messages.
    exog : None or sequence of str, default ()
        The exogenous regressors of a DataFrame: ``()`` none (extra columns are ignored), None
        every column other than ``unique_id``, ``ds``, ``y`` (each must be numeric or bool), or
        the names of the columns to use.  Arrays carry no regressors: a non-empty ``exog`` with
        them is refused.

    Raises
    ------
    TypeError, ValueError
        Naming the column or key at fault.
    """
    if isinstance(data, Panel):
        return data
    if is_frame(data):
        return _frame_panel(data, name, exog)
    if exog is None:
        exog = ()
    if list(exog):
        raise ValueError(f"exog={list(exog)!r} needs a DataFrame with those columns: {name} is a "
                         f"{type(data).__name__} of arrays, which carries no exogenous regressors")
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
    return Panel(keys, values, source)



def _infer_offset(pd, index):
    """``pandas.infer_freq(index)`` as an offset, or None: the same on pandas 2 (which returns a
    string) and on pandas 3, which warns that it will return an offset unless asked to already."""
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            freq = pd.infer_freq(index)
    except (KeyError, AttributeError):  # pandas without the option (OptionError is both)
        freq = pd.infer_freq(index)
    return None if freq is None else pd.tseries.frequencies.to_offset(freq)

def exog_columns(df, exog, name="data"):
    """The regressor columns of DataFrame ``df`` that ``exog`` selects (see :func:`as_panel`), checked.

    Raises
    ------
    TypeError
        For ``exog`` not None nor a sequence of str, or a selected column that is not numeric
        (naming the columns; with ``exog=None`` select the numeric columns with ``exog=[...]``).
    ValueError
        For a selected column that ``df`` lacks, or one of ``unique_id``, ``ds``, ``y``, or a repeat.
    """
    pd = pandas()
    if exog is None:
        names = [c for c in df.columns if c not in KEY_COLUMNS]
    else:
        if isinstance(exog, str) or not all(isinstance(c, str) for c in exog):
            raise TypeError(f"exog must be None or a list of column names (str), got {exog!r}")
        names = list(exog)
        reserved = [c for c in names if c in KEY_COLUMNS]
        if reserved:
            raise ValueError(f"exog names {reserved}, which are not regressors: unique_id, ds and y are the key "
                             "and target columns")
        if len(set(names)) != len(names):
            raise ValueError(f"exog names a column more than once: {names}")
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks exogenous column(s) {missing} (exog={names})")
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        dtypes = {str(c): str(df[c].dtype) for c in bad}
        hint = " (or choose the regressors with exog=[...])" if exog is None else ""
        raise TypeError(
            f"exogenous column(s) {[str(c) for c in bad]} of {name} are not numeric (dtypes {dtypes}): every column "
            f"other than unique_id, ds and y is an exogenous regressor and must be numeric or bool; drop or encode "
            f"them{hint}"
        )
    if not all(isinstance(c, str) for c in names):
        raise TypeError(f"exogenous column names must be str, got {names!r}")
    return names


def _exog_matrix(pd, frame, names, uid, name):
    """The (rows, m) float64 values of the regressor columns ``names`` of ``frame``, checked finite."""
    x = np.empty((len(frame), len(names)))
    for j, c in enumerate(names):
        col = frame[c]
        x[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(x[:, j])
        if bad.any():
            ids = pd.unique(np.asarray(uid)[bad])[:5].tolist()
            raise ValueError(f"exogenous column {c!r} of {name} has NaN or inf for unique_id {ids}")
    return x


def _frame_panel(df, name, exog=()):
    pd = pandas()
    missing = [c for c in ("unique_id", "ds", "y") if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}: a long DataFrame needs columns unique_id, ds, y")
    names = exog_columns(df, exog, name)
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
    xs = _exog_matrix(pd, df, names, frame["unique_id"].to_numpy(), name) if names else None
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
    exog_values = None if xs is None else np.split(xs[frame.index.to_numpy()], cut)  # (the index: rows before the sort)
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
    return Panel(keys, values, "frame", {"kind": kind, "freq": freq, "start": starts, "ordinal0": ordinal0},
                 exog_values, names)


def _ordinals(starts, offset):
    """Season ordinals of the first dates (months since year 0, quarters, or whole periods since
    1970 for fixed-length frequencies); None when the frequency has no such count."""
    pd = pandas()
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


def exog_rows(panel, horizon, future=None):
    """Each series' regressor rows: its history, and its history followed by its ``horizon`` future rows.

    Parameters
    ----------
    panel : Panel
        With regressors.
    horizon : int
    future : list of ndarray, shape (horizon, m), optional
        The future rows (:func:`future_exog`); None takes the ``horizon`` rows of ``panel.exog``
        after each history (a rolling-origin cut's, see :meth:`Panel.subset`).

    Returns
    -------
    history : list of ndarray, shape (n_i, m)
    rows : list of ndarray, shape (n_i + horizon, m)

    Raises
    ------
    ValueError
        When ``future`` is None and a series has fewer future rows, naming the series.
    """
    n = [len(v) for v in panel.values]
    history = [x[:k] for x, k in zip(panel.exog, n)]
    if future is None:
        short = [panel.keys[i] for i, (x, k) in enumerate(zip(panel.exog, n)) if len(x) < k + horizon]
        if short:
            raise ValueError(
                f"this model was fitted with the exogenous regressors {panel.exog_names}: pass their {horizon} future "
                f"values per series as X_df, a DataFrame with columns unique_id, ds, {', '.join(panel.exog_names)} "
                f"(none for unique_id {short[:5]})"
            )
        future = [x[k : k + horizon] for x, k in zip(panel.exog, n)]
    return history, [np.concatenate([x, f]) for x, f in zip(history, future)]


def future_exog(x_df, panel, names, horizon, name="X_df"):
    """The regressors' values at the ``horizon`` dates after every series of ``panel``, from ``x_df``.

    Parameters
    ----------
    x_df : pandas.DataFrame
        Columns ``unique_id``, ``ds`` and the regressors ``names``; one row per series and
        future date (rows of other series or dates are ignored; any order).
    panel : Panel
        A DataFrame's panel (its ``dates`` give each series' future dates).
    names : list of str
        The regressors, in the model's order.
    horizon : int

    Returns
    -------
    list of ndarray, shape (horizon, m)
        One per series of ``panel``, float64, finite.

    Raises
    ------
    TypeError
        For ``x_df`` not a DataFrame, ``ds`` of another kind than the history's, or a
        non-numeric regressor column.
    ValueError
        For a missing column, duplicate ``(unique_id, ds)`` rows, a series with missing future
        dates (naming the series and the first missing date), or NaN/inf (naming the column and
        the series).
    """
    if not is_frame(x_df):
        raise TypeError(f"{name} must be a pandas DataFrame with columns unique_id, ds, {', '.join(names)}, "
                        f"got {type(x_df).__name__}")
    pd = pandas()
    missing = [c for c in ["unique_id", "ds", *names] if c not in x_df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}: the model was fitted with the exogenous regressors "
                         f"{names}, whose {horizon} future values per series {name} must hold")
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(x_df[c])]
    if bad:
        raise TypeError(f"exogenous column(s) {bad} of {name} are not numeric (dtypes "
                        f"{ {c: str(x_df[c].dtype) for c in bad} })")
    ds = x_df["ds"]
    if panel.dates["kind"] == "datetime":
        if not pd.api.types.is_datetime64_any_dtype(ds):
            raise TypeError(f"column 'ds' of {name} must hold datetimes, as the history's does, got dtype {ds.dtype}")
    elif not pd.api.types.is_integer_dtype(ds) or pd.api.types.is_bool_dtype(ds):
        raise TypeError(f"column 'ds' of {name} must hold integers, as the history's does, got dtype {ds.dtype}")
    s = len(panel.keys)
    want_ds = [future_dates(panel.dates, i, len(panel.values[i]), horizon) for i in range(s)]
    want = pd.DataFrame({"_series": np.repeat(np.arange(s, dtype=np.int64), horizon),
                         "ds": pd.Series(np.concatenate(want_ds))})
    series = pd.Index(panel.keys).get_indexer(x_df["unique_id"])
    have = pd.DataFrame({"_series": series, "ds": ds.to_numpy(), "_row": np.arange(len(x_df))})
    have = have[have["_series"] >= 0]
    if len(have) and want["ds"].dtype != have["ds"].dtype:
        try:
            have["ds"] = have["ds"].astype(want["ds"].dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"column 'ds' of {name} has dtype {ds.dtype}, which does not compare with the history's "
                            f"dates ({want['ds'].dtype}): {exc}") from None
    dup = have.duplicated(["_series", "ds"])
    if dup.any():
        r = have[dup].iloc[0]
        raise ValueError(f"{name} has duplicate (unique_id, ds) rows, e.g. ({panel.keys[int(r['_series'])]!r}, "
                         f"{r['ds']})")
    found = want.merge(have, on=["_series", "ds"], how="left", sort=False)
    absent = found["_row"].isna().to_numpy()
    if absent.any():
        first = int(np.flatnonzero(absent)[0])
        key = panel.keys[int(found["_series"].iloc[first])]
        count = int(absent.reshape(s, horizon)[first // horizon].sum())
        raise ValueError(
            f"{name} lacks future values of the exogenous regressors for unique_id {key!r}: {count} of its "
            f"{horizon} forecast dates are missing, the first {found['ds'].iloc[first]} (expected one row per "
            f"series and forecast date)"
        )
    rows = found["_row"].to_numpy(dtype=np.int64)
    x = _exog_matrix(pd, x_df.iloc[rows], names, np.asarray(x_df["unique_id"].to_numpy())[rows], name)
    return list(x.reshape(s, horizon, len(names)))


def future_dates(dates, i, n, horizon):
    """The ``horizon`` dates after series ``i``'s ``n`` values."""
    if dates["kind"] == "datetime":
        pd = pandas()
        index = pd.date_range(start=dates["start"][i], periods=n + horizon, freq=dates["freq"])
        return index[n:].to_numpy()
    return dates["start"][i] + dates["freq"] * np.arange(n, n + horizon, dtype=np.int64)


def all_dates(dates, i, n):
    if dates["kind"] == "datetime":
        pd = pandas()
        return pd.date_range(start=dates["start"][i], periods=n, freq=dates["freq"]).to_numpy()
    return dates["start"][i] + dates["freq"] * np.arange(n, dtype=np.int64)


def level_name(v):
    """How an interval level is written in column and key names: ``80``, ``97.5``."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))
