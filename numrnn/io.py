"""Safe saving and loading of models as ``.npz`` files.

A numrnn file is an ordinary NumPy ``.npz`` archive holding

* ``__numrnn__``: a JSON document (stored as a 0-d unicode array) with the format version, the
  ``kind`` of object saved (``"forecaster"``, ``"module"``, ...), its JSON config, and a SHA-256
  digest of every array;
* the arrays themselves, under names such as ``model/0.weight_ih_l0`` or ``optim/exp_avg/...``.

Writing goes to a temporary file in the destination folder, which is flushed, ``fsync``-ed and
moved into place with :func:`os.replace`: an interrupted save never destroys the previous file.
Reading never unpickles (object arrays are refused), reads only regular files, checks every
member's header against its size, bounds the nesting of the metadata and checks the digests, so
a truncated, corrupt, edited or crafted file raises a :class:`ValueError` naming what is wrong
instead of loading silently bad weights, exhausting memory or blocking.  :func:`load` also checks
the arrays against the saved config before it builds anything.

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
import math
import os
import re
import socket
import stat
import tempfile
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from numrnn import _validation as check
from numrnn.cells import FAMILIES

__all__ = ["save_npz", "load_npz", "save", "load", "FORMAT_VERSION"]

#: Version of the on-disk layout; bumped on incompatible changes.
FORMAT_VERSION = 1
_META = "__numrnn__"
#: Deepest nesting of lists and objects accepted in the metadata (numrnn's own need < 20).
_MAX_DEPTH = 64
#: Tags this machine's temporary files, so only its own writers' liveness is judged.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


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

    Notes
    -----
    The data goes to a temporary file ``.{name}.{host}-{pid}.{random}.tmp`` next to ``path``
    (``host`` a hash of this machine's name, ``pid`` the writer's process id), which is flushed,
    ``fsync``-ed and renamed over ``path``: readers see the old file or the new one, never a mix,
    also with several concurrent writers.  An exception removes the temporary file; a writer
    killed outright (``kill -9``, power loss) leaves it behind, and the next successful save to
    the same ``path`` removes it: it removes the temporaries of ``path`` written from this machine
    by a process that no longer exists (on POSIX systems), never those of a live writer.
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
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=folder)
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
    _remove_stale_temporaries(folder, base)
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


def _remove_stale_temporaries(folder, base):
    """Remove the temporary files of ``folder/base`` left by dead writers on this machine."""
    if os.name != "posix":  # elsewhere os.kill(pid, 0) is no liveness test
        return
    pattern = re.compile(re.escape(f".{base}.{_HOST}-") + r"(\d+)\.[^.]+\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:  # best effort: the save itself has succeeded
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match and not _alive(int(match[1])):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:  # removed by another writer meanwhile
                pass


def _alive(pid):
    """Whether process ``pid`` exists (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or no valid pid: leave it be
        return True
    return True


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
        If ``path`` is not a regular file (a folder, FIFO, device, ...; it is not opened, so this
        never blocks), or the file is not a numrnn file, is truncated or corrupt (including a
        member that is not a numeric ``.npy`` array or whose header does not match its size, and
        metadata nested more than 64 deep), has a newer format version, holds another kind of
        object, or an array does not match its recorded digest.
    """
    path = _check_path(path)
    try:
        # Refuse FIFOs and devices before opening them; O_NONBLOCK (and the second check) keep
        # one swapped in meanwhile from blocking the open.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError("it is not a regular file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("it is not a regular file")
            text, arrays = _read_archive(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path!r}") from None
    except ValueError as exc:
        raise ValueError(f"cannot load {path!r}: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot load {path!r}: the file is truncated or corrupt ({exc})") from None
    except Exception as exc:  # zlib errors, memory and the like
        raise ValueError(f"cannot load {path!r}: the file is corrupt ({type(exc).__name__}: {exc})") from None
    text = str(text[()])
    if _nested_too_deep(text):
        raise ValueError(f"cannot load {path!r}: its {_META!r} entry is nested deeper than {_MAX_DEPTH} levels")
    try:
        meta = json.loads(text)
    except ValueError as exc:
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


def _read_archive(fh):
    """The metadata (a 0-d str array) and the other arrays of the open ``.npz`` file ``fh``."""
    if fh.read(6) == b"\x93NUMPY":
        raise ValueError("it holds a single array, not an .npz archive")
    fh.seek(0)
    arrays = {}
    with zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"its member {info.filename!r} is not a .npy array")
            name = info.filename[: -len(".npy")]
            if name in arrays:
                raise ValueError(f"it holds array {name!r} twice")
            arrays[name] = _read_array(zf, info, name)
    if _META not in arrays:
        raise ValueError(f"it has no {_META!r} entry (not written by numrnn)")
    return arrays.pop(_META), arrays


def _read_array(zf, info, name):
    """Read one member, after checking from its header that it is numeric (the metadata: a 0-d
    str) and exactly as long as its shape says, so a crafted header cannot make us allocate."""
    with zf.open(info) as f:
        version = npy_format.read_magic(f)
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"array {name!r} has .npy format version {version}, expected 1.0 or 2.0")
        shape, _, dtype = read_header(f)
        if name == _META:
            ok, wanted = dtype.kind == "U" and shape == (), "a 0-d str"
        else:
            ok, wanted = dtype.kind in "biufc", "a numeric dtype"
        if not ok:
            raise ValueError(f"array {name!r} is {dtype}{shape}, expected {wanted}")
        nbytes = math.prod(shape) * dtype.itemsize
        held = info.file_size - f.tell()
        if nbytes != held:
            raise ValueError(f"array {name!r} declares {dtype}{shape} ({nbytes} bytes) but holds {held} bytes")
        f.seek(0)
        return npy_format.read_array(f, allow_pickle=False)


# A JSON string; an unterminated one runs to the end (so matching it never backtracks).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')


def _nested_too_deep(text):
    """Whether JSON ``text`` nests lists and objects deeper than ``_MAX_DEPTH`` (checked before
    parsing, which recurses); brackets inside strings do not count."""
    depth = 0
    for bracket in re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > _MAX_DEPTH:
            return True
    return False


def save(path, obj, optimizer=None):
    """Save a module (a numrnn layer, a :mod:`numrnn.nn` module or a stack of them) and, optionally,
    its optimiser.

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
    """Load what :func:`save` wrote.

    The arrays are checked against the saved config (every parameter and optimiser state array
    present with the shape and dtype the config implies, nothing else) before any module or
    optimiser is built, so a crafted config cannot make this allocate more than the file holds.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    module : module
        Rebuilt from its config, with the saved weights.
    optimizer : numrnn.optim.Optimizer or None
        The saved optimiser with its state, or None if none was saved.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If :func:`load_npz` refuses the file, or its arrays do not fit its config.
    """
    from numrnn import nn

    config, arrays = load_npz(path, kind="module")
    try:
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        params = _check_module(config.get("module"), arrays, "model/")
        expected = set(params)
        if config.get("optimizer") is not None:
            keyed = {name[len("model/"):]: arr for name, arr in params.items()}
            expected |= _check_optimizer(config["optimizer"], keyed, arrays, "optim")
        unexpected = sorted(set(arrays) - expected)
        if unexpected:
            raise ValueError(f"unexpected arrays {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        module = nn.module_from_spec(config["module"])
        module.load_state_dict({name[len("model/"):]: arr for name, arr in params.items()})
        optimizer = None
        if config.get("optimizer") is not None:
            optimizer = _optimizer_from_arrays(config["optimizer"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {os.fspath(path)!r}: the saved model does not fit its config ({exc})") from None
    return module, optimizer


#: Gate blocks stacked in a recurrent layer's weights, by layer class name (from the cell registry).
_GATES = {family.layer: family.gates for family in FAMILIES.values()}
#: Module types of :mod:`numrnn.nn` without parameters (their config implies no arrays).
_PARAMETERLESS = ("LastStep", "Dropout", "Flatten", "Tanh", "ReLU", "Sigmoid")


def _expect(arrays, name, shape, dtype):
    """``arrays[name]``, which must exist with this shape and dtype."""
    arr = arrays.get(name)
    if arr is None:
        raise ValueError(f"array {name!r} is missing")
    if arr.shape != shape or arr.dtype != dtype:
        raise ValueError(f"array {name!r} is {arr.dtype}{arr.shape}, its config implies {dtype}{shape}")
    return arr


def _check_module(spec, arrays, prefix):
    """Check that ``arrays`` hold every parameter the :func:`numrnn.nn.module_spec` ``spec`` implies.

    Nothing is built: the sizes in ``spec`` are checked against the arrays at hand, and the loop
    over layers stops at the first missing one, so a huge config fails fast.

    Returns
    -------
    dict of str -> ndarray
        The parameters found, under ``prefix`` + their ``state_dict`` names.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise ValueError(f"module spec must be a dict with a 'config' dict, got {type(spec).__name__}")
    kind, config = spec.get("type"), spec["config"]
    if kind == "Sequential":
        modules = config.get("modules")
        if not isinstance(modules, list):
            raise ValueError(f"{prefix}modules: a Sequential's 'modules' must be a list, got {type(modules).__name__}")
        names = config.get("names", [str(i) for i in range(len(modules))])
        if not isinstance(names, list) or len(names) != len(modules) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{prefix}names: a Sequential's 'names' must be a list of {len(modules)} strings")
        found = {}
        for name, sub in zip(names, modules):
            found.update(_check_module(sub, arrays, f"{prefix}{name}."))
        return found
    if kind in _PARAMETERLESS:
        return {}
    if kind not in ("Linear", "Embedding", "LayerNorm", *_GATES):  # a tuple: unhashable crafted types compare unequal
        raise ValueError(f"unknown module type {kind!r}")
    dtype = config.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"{prefix}dtype must be 'float32' or 'float64', got {dtype!r}")

    def size(key):
        return check.check_positive_int(config.get(key), prefix + key)

    def expect_all(shapes):
        return {prefix + k: _expect(arrays, prefix + k, shape, dtype) for k, shape in shapes.items()}

    if kind == "Embedding":
        return expect_all({"weight": (size("num_embeddings"), size("embedding_dim"))})
    if kind == "LayerNorm":
        dims = config.get("normalized_shape")
        if not isinstance(dims, list) or not dims:
            raise ValueError(f"{prefix}normalized_shape must be a non-empty list, got {type(dims).__name__}")
        if len(dims) > 64:  # more axes than any NumPy array can have: no saved parameter fits
            raise ValueError(f"{prefix}normalized_shape has {len(dims)} axes, more than an array can have")
        shape = tuple(check.check_positive_int(n, f"{prefix}normalized_shape[{i}]") for i, n in enumerate(dims))
        if not check.check_bool(config.get("elementwise_affine"), f"{prefix}elementwise_affine"):
            return {}
        bias = check.check_bool(config.get("bias"), f"{prefix}bias")
        return expect_all({"weight": shape, "bias": shape} if bias else {"weight": shape})
    bias = check.check_bool(config.get("bias"), f"{prefix}bias")
    if kind == "Linear":
        n_in, n_out = size("in_features"), size("out_features")
        return expect_all({"weight": (n_out, n_in), "bias": (n_out,)} if bias else {"weight": (n_out, n_in)})
    n_in, hidden, layers = size("input_size"), size("hidden_size"), size("num_layers")
    bidirectional = check.check_bool(config.get("bidirectional"), f"{prefix}bidirectional")
    gates = _GATES[kind] * hidden
    found = {}
    for layer in range(layers):
        width = n_in if layer == 0 else hidden * (2 if bidirectional else 1)
        for suffix in (f"_l{layer}", f"_l{layer}_reverse") if bidirectional else (f"_l{layer}",):
            shapes = {"weight_ih": (gates, width), "weight_hh": (gates, hidden)}
            if bias:
                shapes.update(bias_ih=(gates,), bias_hh=(gates,))
            for key, shape in shapes.items():
                name = f"{prefix}{key}{suffix}"
                found[name] = _expect(arrays, name, shape, dtype)
    return found


def _check_optimizer(config, params, arrays, prefix):
    """Check an optimiser's saved config and state arrays before it is built.

    Each state array must belong to one of ``params`` (``state_dict`` name -> array) and have its
    shape and dtype.  Returns the names of the state arrays.
    """
    if not isinstance(config, dict):
        raise ValueError(f"the optimiser config must be a dict, got {type(config).__name__}")
    if config.get("type") not in [c.__name__ for c in _loadable_optimizers()]:
        raise ValueError(f"unknown optimiser type {config.get('type')!r}")
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"the optimiser's config must be a dict, got {type(config.get('config')).__name__}")
    steps = config.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"the optimiser's steps must be an int >= 0, got {steps!r}")
    slots = config.get("slots")
    if not isinstance(slots, dict):
        raise ValueError(f"the optimiser's slots must be a dict, got {type(slots).__name__}")
    names = set()
    for key, slot_names in slots.items():
        if key not in params:
            raise ValueError(f"the optimiser has state for {key!r}, which the model does not have")
        if not isinstance(slot_names, list) or not all(isinstance(slot, str) for slot in slot_names):
            raise ValueError(f"the optimiser's slot names must be str, got {slot_names!r} for {key!r}")
        for slot in slot_names:
            name = f"{prefix}/{slot}/{key}"
            _expect(arrays, name, params[key].shape, params[key].dtype)
            names.add(name)
    return names


def _loadable_optimizers():
    """The optimiser classes :func:`load` rebuilds (imported lazily: optim imports io's users)."""
    from numrnn import optim

    return (optim.SGD, optim.Adam, optim.AdamW)


def _optimizer_to_arrays(optimizer, prefix="optim"):
    """Split an optimiser's state_dict into a JSON part and named arrays.

    Only the optimisers that :func:`load` rebuilds (SGD, Adam, AdamW) are saved: any other
    is refused here, so that no file is written that cannot be loaded back.
    """
    if type(optimizer) not in _loadable_optimizers():
        names = ", ".join(c.__name__ for c in _loadable_optimizers())
        raise TypeError(
            f"optimizer must be one of {names} (the optimisers io.load rebuilds) or None, got "
            f"{type(optimizer).__name__}; save the model alone with optimizer=None"
        )
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
    cls = {c.__name__: c for c in _loadable_optimizers()}.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown optimiser type {config['type']!r}")
    state = {}
    for key, slots in config["slots"].items():
        state[key] = {slot: arrays[f"{prefix}/{slot}/{key}"] for slot in slots}
    opt = cls(**config["config"])
    opt.load_state_dict({"type": config["type"], "config": config["config"], "steps": config["steps"], "state": state})
    return opt
