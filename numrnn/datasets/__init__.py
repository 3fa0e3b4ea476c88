"""Small public-domain time series shipped with numrnn, loaded offline.

=====================  ==========================================================  ======
loader                 series                                                      length
=====================  ==========================================================  ======
:func:`load_airline`   monthly airline passengers (thousands), 1949-01 .. 1960-12  144
:func:`load_sunspots`  yearly mean sunspot activity, 1700 .. 2008                  309
:func:`load_co2`       weekly Mauna Loa CO2 (ppm), 1958-03-29 .. 2001-12-29        2284
=====================  ==========================================================  ======

Each loader returns the values as a float64 array of shape ``(n,)``; with ``return_dates=True``
it returns ``(values, dates)`` with the dates as ``numpy.datetime64`` (month, year or day
resolution).  Provenance: ``numrnn/datasets/data/README.md`` (all three are public domain).

Examples
--------
>>> from numrnn.datasets import load_airline
>>> y, dates = load_airline(return_dates=True)
>>> y.shape, str(dates[0]), float(y[0])
((144,), '1949-01', 112.0)
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import numpy as np

from numrnn import _validation as check

__all__ = ["load_airline", "load_sunspots", "load_co2"]


def _read_csv(filename):
    """Rows of a bundled CSV (header dropped) as lists of strings."""
    text = resources.files(__name__).joinpath("data", filename).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    return [row for row in rows[1:] if row]


def load_airline(return_dates=False):
    """Monthly totals of international airline passengers (thousands), 1949-01 .. 1960-12.

    Box & Jenkins Series G; 144 values with a trend and a multiplicative yearly season.

    Parameters
    ----------
    return_dates : bool, default False
        Also return the months.

    Returns
    -------
    values : ndarray of float64, shape (144,)
    dates : ndarray of datetime64[M], shape (144,)
        Only with ``return_dates=True``.
    """
    return_dates = check.check_bool(return_dates, "return_dates")
    rows = _read_csv("airline.csv")
    values = np.array([float(r[1]) for r in rows])
    if not return_dates:
        return values
    return values, np.array([r[0] for r in rows], dtype="datetime64[M]")


def load_sunspots(return_dates=False):
    """Yearly mean sunspot activity, 1700 .. 2008 (NOAA NGDC); 309 values, a cycle of ~11 years.

    Parameters
    ----------
    return_dates : bool, default False
        Also return the years.

    Returns
    -------
    values : ndarray of float64, shape (309,)
    dates : ndarray of datetime64[Y], shape (309,)
        Only with ``return_dates=True``.
    """
    return_dates = check.check_bool(return_dates, "return_dates")
    rows = _read_csv("sunspots.csv")
    values = np.array([float(r[1]) for r in rows])
    if not return_dates:
        return values
    return values, np.array([str(int(float(r[0]))) for r in rows], dtype="datetime64[Y]")


def load_co2(return_dates=False, missing="interpolate"):
    """Weekly atmospheric CO2 at Mauna Loa (ppm), 1958-03-29 .. 2001-12-29 (Scripps / CDIAC).

    2284 weeks, of which 59 have no measurement.

    Parameters
    ----------
    return_dates : bool, default False
        Also return the dates (the Saturday ending each week).
    missing : {"interpolate", "drop"}, default "interpolate"
        ``"interpolate"`` fills missing weeks linearly in time between their neighbours (the
        series keeps all 2284 regular weeks); ``"drop"`` removes them (2225 values, irregular
        dates).

    Returns
    -------
    values : ndarray of float64, shape (2284,) or (2225,)
    dates : ndarray of datetime64[D]
        Only with ``return_dates=True``.
    """
    return_dates = check.check_bool(return_dates, "return_dates")
    if missing not in ("interpolate", "drop"):
        raise ValueError(f"missing must be 'interpolate' or 'drop', got {missing!r}")
    rows = _read_csv("co2_weekly.csv")
    dates = np.array([f"{r[0][:4]}-{r[0][4:6]}-{r[0][6:8]}" for r in rows], dtype="datetime64[D]")
    values = np.array([float(r[1]) if len(r) > 1 and r[1].strip() else np.nan for r in rows])
    known = ~np.isnan(values)
    if missing == "drop":
        values, dates = values[known], dates[known]
    else:
        days = dates.astype(np.int64).astype(np.float64)
        values = np.interp(days, days[known], values[known])
    if not return_dates:
        return values
    return values, dates
