"""Safe saving and loading of models as ``.npz`` files.

A numrnn file is an ordinary NumPy ``.npz`` archive holding

* ``__numrnn__``: a JSON document (stored as a 0-d unicode array) with the format version, the
  ``kind`` of object saved (``"forecaster"``, ``"module"``, ...), its JSON config, and a SHA-256
  digest of every array;
* the arrays themselves, under names such as ``model/0.weight_ih_l0`` or ``optim/exp_avg/...``.

Writing goes to a temporary file in the destination folder, which is flushed, ``fsync``-ed and
moved into place with :func:`os.replace`: an interrupted save never destroys the previous file.
Reading uses ``allow_pickle=False`` and checks the digests, so a truncated, corrupt or edited
file raises a :class:`ValueError` naming what is wrong instead of loading silently bad weights.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from numrnn.io import save_npz, load_npz
>>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
>>> save_npz(path, "demo", {"answer": 42}, {"w": np.arange(3.0)})
>>> config, arrays = load_npz(path, kind="demo")
>>> config["answer"], arrays["w"]
(42, array([0., 1., 2.]))
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save_npz", "load_npz", "save", "load", "FORMAT_VERSION"]

#: Version of the on-disk layout; bumped on incompatible changes.
FORMAT_VERSION = 1
_META = "__numrnn__"


def _digest(arr):
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("path must not be empty")
    return path


def save_npz(path, kind, config, arrays):
    """Write ``config`` (JSON) and ``arrays`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.  ``.npz`` is *not* appended.
    kind : str
        What is saved; :func:`load_npz` can insist on it.
    config : dict
        JSON-serialisable description (constructor arguments, scaler, ...).
    arrays : dict of str -> ndarray
        Numeric arrays (no object arrays); names must not start with ``__``.

    Raises
    ------
    TypeError
        If ``config`` is not JSON-serialisable or an array is not numeric.
    """
    path = _check_path(path)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty str, got {kind!r}")
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of str -> ndarray, got {type(arrays).__name__}")
    clean = {}
    for name, arr in arrays.items():
        if not isinstance(name, str) or not name or name.startswith("__"):
            raise ValueError(f"array names must be non-empty str not starting with '__', got {name!r}")
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"arrays[{name!r}] must be numeric, got dtype {arr.dtype}")
        clean[name] = arr
    meta = {
        "format": "numrnn",
        "version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "digests": {name: _digest(arr) for name, arr in clean.items()},
    }
    try:
        text = json.dumps(meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"config must be JSON-serialisable (finite floats, str keys): {exc}") from None

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} for path does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{_META: np.array(text)}, **clean)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_npz(path, kind=None):
    """Read a file written by :func:`save_npz`; returns ``(config, arrays)``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    kind : str, optional
        If given, the file must hold this kind of object.

    Returns
    -------
    config : dict
    arrays : dict of str -> ndarray

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a numrnn file, is truncated or corrupt, has a newer format version,
        holds another kind of object, or an array does not match its recorded digest.
    """
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with open(path, "rb") as fh:  # our handle: closed even when np.load fails half-way
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            with npz:
                names = list(npz.files)
                if _META not in names:
                    raise ValueError(f"it has no {_META!r} entry (not written by numrnn)")
                text = npz[_META]
                arrays = {name: npz[name] for name in names if name != _META}
    except ValueError as exc:
        raise ValueError(f"cannot load {path!r} as a numrnn file: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot load {path!r}: the file is truncated or corrupt ({exc})") from None
    except Exception as exc:  # zlib errors, pickle refusal and the like
        raise ValueError(f"cannot load {path!r}: the file is corrupt ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(str(text[()]))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"cannot load {path!r}: its {_META!r} entry is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "numrnn":
        raise ValueError(f"cannot load {path!r}: not a numrnn file")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"cannot load {path!r}: format version {version!r}; this numrnn reads versions 1..{FORMAT_VERSION}"
        )
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"cannot load {path!r}: it holds a {meta.get('kind')!r}, expected a {kind!r}")
    digests = meta.get("digests")
    if not isinstance(digests, dict):
        raise ValueError(f"cannot load {path!r}: its metadata has no array digests")
    if set(digests) != set(arrays):
        missing = sorted(set(digests) - set(arrays))
        extra = sorted(set(arrays) - set(digests))
        raise ValueError(f"cannot load {path!r}: arrays missing {missing}, unexpected {extra}")
    for name, arr in arrays.items():
        if _digest(arr) != digests[name]:
            raise ValueError(f"cannot load {path!r}: array {name!r} does not match its digest (corrupt or edited)")
    return meta.get("config"), arrays


def save(path, obj, optimizer=None):
    """Save a module (``numrnn.nn`` stack, layer or ``Linear``) and, optionally, its optimiser.

    The module must have ``config()`` and ``state_dict()``; it is rebuilt by :func:`load`.

    Parameters
    ----------
    path : str or os.PathLike
    obj : module
    optimizer : numrnn.optim.Optimizer, optional
        Its hyperparameters, step count and state are saved too.
    """
    from numrnn import nn

    spec = nn.module_spec(obj)
    arrays = {f"model/{k}": np.asarray(v) for k, v in obj.state_dict().items()}
    config = {"module": spec, "optimizer": None}
    if optimizer is not None:
        opt_config, opt_arrays = _optimizer_to_arrays(optimizer)
        config["optimizer"] = opt_config
        arrays.update(opt_arrays)
    save_npz(path, "module", config, arrays)


def load(path):
    """Load what :func:`save` wrote; returns ``(module, optimizer_or_None)``."""
    from numrnn import nn

    config, arrays = load_npz(path, kind="module")
    try:
        module = nn.module_from_spec(config["module"])
        state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        module.load_state_dict(state)
        optimizer = None
        if config.get("optimizer") is not None:
            optimizer = _optimizer_from_arrays(config["optimizer"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {os.fspath(path)!r}: the saved model does not fit its config ({exc})") from None
    return module, optimizer


def _optimizer_to_arrays(optimizer, prefix="optim"):
    """Split an optimiser's state_dict into a JSON part and named arrays."""
    sd = optimizer.state_dict()
    arrays = {}
    slots = {}
    for key, st in sd["state"].items():
        slots[key] = sorted(st)
        for slot, arr in st.items():
            arrays[f"{prefix}/{slot}/{key}"] = arr
    config = {"type": sd["type"], "config": sd["config"], "steps": sd["steps"], "slots": slots}
    return config, arrays


def _optimizer_from_arrays(config, arrays, prefix="optim"):
    from numrnn import optim

    cls = {c.__name__: c for c in (optim.SGD, optim.Adam, optim.AdamW)}.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown optimiser type {config['type']!r}")
    state = {}
    for key, slots in config["slots"].items():
        state[key] = {slot: arrays[f"{prefix}/{slot}/{key}"] for slot in slots}
    opt = cls(**config["config"])
    opt.load_state_dict({"type": config["type"], "config": config["config"], "steps": config["steps"], "state": state})
    return opt
