"""Saving and loading the forecasters: :func:`numrnn.io.save_npz` / :func:`numrnn.io.load_npz`
(an atomic ``.npz`` of named arrays and a JSON config, never a pickle).

Everything a file holds is checked before any network is built, so a crafted file raises the
loaders' ``ValueError`` instead of allocating, hanging or raising another exception.  The file
layout is that of the modules ``numrnn.forecast`` and ``numrnn.global_forecast`` before they
became this package: files saved then load unchanged.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from numrnn import _validation as check
from numrnn import io as nio
from numrnn.forecast.calibration import CALIBRATION_RANGE
from numrnn.forecast.network import PaddedNet
from numrnn.forecast.panel import Panel, pandas
from numrnn.forecast.preprocessing import ColumnScaler
from numrnn.forecast.windows import LEGACY_ANCHOR_SEASONS
from numrnn.optim import OPTIMIZERS, serialization

__all__ = ["FORECASTER_KIND", "GLOBAL_KIND", "load_forecaster", "load_global_forecaster", "save_forecaster",
           "save_global_forecaster"]

#: The ``kind`` of the files each forecaster writes.
FORECASTER_KIND = "forecaster"
GLOBAL_KIND = "global_forecaster"


def save_forecaster(f, fitted, path):
    """Write Forecaster ``f`` with its fitted state ``fitted`` to ``path`` (see :meth:`Forecaster.save`)."""
    arrays = fitted["scaler"].to_arrays()
    optimizers = []
    for j, (net, opt) in enumerate(zip(fitted["members"], fitted["optimizers"])):
        for name, value in net.state_dict().items():
            arrays[f"member{j}/{name}"] = value
        if opt is None:
            optimizers.append(None)
        else:
            opt_config, opt_arrays = serialization.optimizer_to_arrays(opt, prefix=f"optim{j}")
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

    params = f.get_params()
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
    nio.save_npz(path, FORECASTER_KIND, config, arrays)



def load_forecaster(cls, path):
    """A Forecaster (of class ``cls``) read from ``path``, checked (see :meth:`Forecaster.load`)."""
    config, arrays = nio.load_npz(path, kind=FORECASTER_KIND)
    where = f"cannot load {nio._check_path(path)!r}"
    try:
        saved = _check_saved(cls, config, arrays)
        f = saved["forecaster"]
        # built only now, from checked configs and arrays: optimisers first (no network yet)
        optimizers = [
            None if opt_config is None else serialization.optimizer_from_arrays(opt_config, arrays, prefix=f"optim{j}")
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
    scaler = ColumnScaler.from_arrays(arrays, k, m, f.transform)

    # every member's weights and optimiser state, against the shapes the parameters imply
    specs = f._net_specs(k, m)
    wanted_optimizer = None if f.optimizer == "lbfgs" else OPTIMIZERS[f.optimizer].__name__
    expected = scaler.array_names()
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
            expected |= serialization.check_optimizer_arrays(opt_config, state, arrays, f"optim{j}")
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
        if not isinstance(values, list) or not all(check.is_real_number(v) and check.is_finite_number(v) for v in values):
            raise ValueError(f"{where}[{key!r}] must be a list of finite numbers")
        out[key] = list(values)
    out["best_epoch"] = check.check_int(h["best_epoch"], f"{where}['best_epoch']", -1)
    out["epochs_run"] = check.check_int(h["epochs_run"], f"{where}['epochs_run']", 0)
    best = h["best_val_loss"]
    if best is not None and not (check.is_real_number(best) and check.is_finite_number(best)):
        raise ValueError(f"{where}['best_val_loss'] must be a finite number or null, got {best!r}")
    out["best_val_loss"] = math.inf if best is None else best
    return out


def save_global_forecaster(gf, fitted, path):
    """Write GlobalForecaster ``gf`` with its fitted state to ``path`` (see :meth:`GlobalForecaster.save`)."""
    panel = fitted["panel"]
    keys = []
    for k in panel.keys:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, numbers.Integral)):
            raise TypeError(f"save() needs str or int series keys (unique_id), got {k!r} of type {type(k).__name__}")
        keys.append(k if isinstance(k, str) else int(k))
    arrays = {"data/values": np.concatenate(panel.values),
              "data/lengths": np.array([len(v) for v in panel.values], dtype=np.int64)}
    names = list(fitted.get("exog", ()))
    if names:  # the regressors' history (their standardisation is recomputed from it, as y's scale is)
        arrays[_EXOG] = np.concatenate([x[: len(v)] for x, v in zip(panel.exog, panel.values)])
    for j, net in enumerate(fitted["members"]):
        for name, value in net.state_dict().items():
            arrays[f"member{j}/{name}"] = value
    calibration = fitted.get("calibration")
    if calibration is not None:
        arrays[_CALIBRATION] = np.array(calibration, dtype=np.float64)  # 0-d: the float, bit for bit
    dates = None
    if panel.dates is not None:
        d = panel.dates
        dt = d["kind"] == "datetime"
        dates = {"kind": d["kind"], "freq": d["freq"].freqstr if dt else int(d["freq"]),
                 "start": [t.isoformat() for t in d["start"]] if dt else [int(s) for s in d["start"]],
                 "ordinal0": None if d["ordinal0"] is None else [int(o) for o in d["ordinal0"]]}
    params = gf.get_params()
    params["seed"] = int(fitted["seed"])
    config = {
        "params": params, "keys": keys, "source": panel.source, "dates": dates,
        "season_length": fitted["season_length"], "lookback": fitted["lookback"], "calendar": fitted["calendar"],
        "seed_used": int(fitted["seed"]), "calibrated": calibration is not None, "exog": names,
        "anchor_seasons": int(fitted["anchor_seasons"]), "series_table": "series" in fitted["specs"],
        "history": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in h.items()}
                    for h in fitted["history"]],
        "unvalidated": [keys[panel.keys.index(k)] for k in fitted["unvalidated_ids"]],
        "untrained": [keys[panel.keys.index(k)] for k in fitted["untrained_ids"]],
    }
    nio.save_npz(path, GLOBAL_KIND, config, arrays)


#: The array of a GlobalForecaster file holding its interval calibration (absent: none).
_CALIBRATION = "calibration/factor"
#: The array of a GlobalForecaster file holding the exogenous regressors' history, (sum n_i, m).
_EXOG = "data/exog"


def _check_exog(config, arrays, n_values):
    """The saved exogenous regressors' names and history (None), checked.

    Files written before regressors existed have no ``exog`` key: they load without, as fitted.
    """
    names = config.get("exog", [])
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
        raise ValueError(f"config['exog'] must be a list of distinct column names, got {names!r}")
    if not names:
        return names, None
    x = check.expect_array(arrays, _EXOG, (n_values, len(names)), "float64")
    if not np.isfinite(x).all():
        raise ValueError(f"array {_EXOG!r} is not finite")
    return names, x


def _check_calibration(config, arrays):
    """The saved interval calibration, checked, or None.

    Files written before the calibration existed have no ``calibrated`` key and no array: they
    load uncalibrated, as they were fitted, so their forecasts are unchanged.
    """
    calibrated = config.get("calibrated", False)
    if not isinstance(calibrated, bool):
        raise ValueError(f"config['calibrated'] must be true or false, got {calibrated!r}")
    if not calibrated:
        return None

    c = float(check.expect_array(arrays, _CALIBRATION, (), "float64"))
    if not CALIBRATION_RANGE[0] <= c <= CALIBRATION_RANGE[1]:  # False for NaN too
        raise ValueError(f"array {_CALIBRATION!r} must be a factor in {list(CALIBRATION_RANGE)}, got {c!r}")
    return c


def load_global_forecaster(cls, path):
    """A GlobalForecaster (of class ``cls``) read from ``path``, checked (see :meth:`GlobalForecaster.load`)."""
    config, arrays = nio.load_npz(path, kind=GLOBAL_KIND)
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
    if isinstance(config["params"], dict) and "series_embedding" not in params:
        params["series_embedding"] = False  # files written before the per-series table
    if set(params) != set(inspect.signature(cls).parameters):
        raise ValueError("config['params'] does not hold the constructor's arguments")
    if params["dtype"] not in ("float32", "float64"):
        raise ValueError(f"config['params']['dtype'] must be 'float32' or 'float64', got {params['dtype']!r}")
    gf = cls(**params)
    seed = check.check_seed(config["seed_used"], "config['seed_used']")
    season = check.check_int(config["season_length"], "config['season_length']", 1)
    lookback = check.check_int(config["lookback"], "config['lookback']", 1)
    calendar = check.check_bool(config["calendar"], "config['calendar']")
    # files written before the anchor read every whole season of the window averaged at most three
    anchor_seasons = check.check_int(config.get("anchor_seasons", LEGACY_ANCHOR_SEASONS), "config['anchor_seasons']", 0)
    keys = config["keys"]
    if not isinstance(keys, list) or not keys:
        raise ValueError("config['keys'] must be a non-empty list")
    source = config["source"]
    if source not in ("dict", "list", "frame"):
        raise ValueError(f"config['source'] must be 'dict', 'list' or 'frame', got {source!r}")
    lengths = arrays.get("data/lengths")
    if lengths is None or lengths.dtype != np.int64 or lengths.shape != (len(keys),) or (lengths < 1).any():
        raise ValueError("array 'data/lengths' must hold one positive int64 per key")
    values = check.expect_array(arrays, "data/values", (int(lengths.sum()),), "float64")
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
            pd = pandas()
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
    names, exog = _check_exog(config, arrays, values.size)
    if names and (source != "frame" or dates is None):
        raise ValueError("config['exog'] names regressors, which only a DataFrame's series have")
    # files written before the per-series table (series_embedding) have none
    series_table = check.check_bool(config.get("series_table", False), "config['series_table']")
    specs = gf._specs(calendar, len(names), len(keys) if series_table else 0)
    calibration = _check_calibration(config, arrays)
    members, expected = [], {"data/values", "data/lengths"} | ({_CALIBRATION} if calibration is not None else set())
    if names:
        expected.add(_EXOG)
    for j in range(gf.ensemble):
        found = {}
        for part, spec in specs.items():
            found.update(nio._check_module(spec, arrays, f"member{j}/{part}."))
        if not all(np.isfinite(a).all() for a in found.values()):
            raise ValueError(f"the weights of member {j} are not finite")
        expected |= set(found)
        net = PaddedNet(specs, (0, 0))
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
    panel = Panel(list(keys), splits, source, dates,
                  None if exog is None else np.split(exog, np.cumsum(lengths)[:-1]), names)
    fitted = {"members": members, "specs": specs, "panel": panel, "season_length": season, "lookback": lookback,
              "calendar": calendar, "seed": seed, "history": history, "calibration": calibration, "exog": names,
              "anchor_seasons": anchor_seasons, "train_keys": list(keys),
              "unvalidated_ids": list(config["unvalidated"]),
              "untrained_ids": list(config["untrained"])}
    return gf, fitted
