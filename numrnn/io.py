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

Module classes of your own (:class:`numrnn.nn.Module` subclasses with a ``config()``) are saved by
class path, ``{"type": "class", "module": ..., "qualname": ..., "config": ...}``, never pickled;
:func:`load` imports them by that path (or takes them from its ``classes`` allow-list) and rebuilds
them from their config: see :func:`save` for what such a class must provide, and :func:`load`'s
notes for what importing a module named in a file means.

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
import sys
import tempfile
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from numrnn import _validation as check
from numrnn.cells import FAMILIES
from numrnn.optim import serialization

__all__ = ["save_npz", "load_npz", "save", "load", "write_atomically", "FORMAT_VERSION"]

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

    write_atomically(path, lambda fh: np.savez(fh, **{_META: np.array(text)}, **clean))


def write_atomically(path, write):
    """Write a file so that it is never half-written: ``write(fh)`` fills a temporary file in
    ``path``'s folder (named with this host and pid), which is flushed, ``fsync``-ed and renamed
    over ``path``; on failure the temporary is removed and the previous file is left as it was.
    Temporaries of dead writers of the same path are removed afterwards.

    Parameters
    ----------
    path : str
        Destination; its folder must exist (``FileNotFoundError`` otherwise).
    write : callable
        Called with the open binary file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} for path does not exist")
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
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
    """Save a module (a numrnn layer, a :mod:`numrnn.nn` module, a stack of them, or a module class
    of your own built from them) and, optionally, its optimiser.

    numrnn's own modules are saved by their ``config()``.  A module class of your own (a
    :class:`numrnn.nn.Module` subclass) is saved *by class path* with no pickle: the file holds
    the class's module and name, the keyword arguments its ``config()`` returns and the arrays of
    its ``state_dict()``; :func:`load` imports the class and rebuilds it with ``cls(**config)``.
    Such a class must

    * subclass :class:`numrnn.nn.Module`;
    * be defined at the top level of an importable module: not inside a function (a
      ``<locals>`` class), not in another class, not in ``__main__`` (a script or notebook,
      which another process cannot import);
    * define ``config()``, returning a dict of JSON-serialisable keyword arguments (str keys;
      numbers, strings, bools, None, lists and dicts of them) such that ``cls(**config)``
      builds a module with the same ``state_dict`` names, shapes and dtypes (the weights are
      then loaded from the file).

    Each of these is checked here (the class is rebuilt once from its JSON-round-tripped config
    and its ``state_dict`` compared), and a class that fails one is refused with a
    ``TypeError`` naming it and what is missing, before anything is written: no file is written
    that :func:`load` cannot load.  Your modules may sit anywhere in a :class:`numrnn.nn.Sequential`
    and may hold numrnn modules, other modules of yours and Sequentials as children (their
    constructor builds them).

    Parameters
    ----------
    path : str or os.PathLike
    obj : module
    optimizer : numrnn.optim.Optimizer, optional
        Its hyperparameters, step count and state are saved too.

    Raises
    ------
    TypeError
        If ``obj`` (or a module in it) cannot be saved and rebuilt (the message names its class
        and why), or ``optimizer`` is not one that :func:`load` rebuilds.

    Examples
    --------
    A module of your own, in an importable file ``mymodels.py``::

        class Tagger(nn.Module):
            def __init__(self, vocab, hidden, seed=0):
                super().__init__()
                self.embed = nn.Embedding(vocab, hidden, seed=seed)
                self.rnn = numrnn.LSTM(hidden, hidden, seed=seed + 1)
                self.head = nn.Linear(hidden, vocab, seed=seed + 2)
                self.vocab, self.hidden, self.seed = vocab, hidden, seed

            def config(self):
                return {"vocab": self.vocab, "hidden": self.hidden, "seed": self.seed}

    then ``numrnn.io.save("tagger.npz", Tagger(100, 32))`` and ``numrnn.io.load("tagger.npz")``.
    """
    spec = _describe(obj, "obj")
    arrays = {f"model/{k}": np.asarray(v) for k, v in obj.state_dict().items()}
    config = {"module": spec, "optimizer": None}
    if optimizer is not None:
        opt_config, opt_arrays = serialization.optimizer_to_arrays(optimizer)
        config["optimizer"] = opt_config
        arrays.update(opt_arrays)
    save_npz(path, "module", config, arrays)


def load(path, classes=None):
    """Load what :func:`save` wrote.

    The arrays are checked against the saved config (every parameter and optimiser state array
    present with the shape and dtype the config implies, nothing else) before any module or
    optimiser is built, so a crafted config cannot make this allocate more than the file holds.

    A module class of your own (saved by class path, see :func:`save`) is imported by its path,
    after every other check of the file has passed, and rebuilt from its saved config; the
    arrays saved for it are then checked against the rebuilt module's ``state_dict`` (names,
    shapes, dtypes) before any weight is loaded.  Nothing is unpickled, and the whole model is
    returned loaded or not at all.

    Parameters
    ----------
    path : str or os.PathLike
    classes : iterable of type, optional
        The module classes of your own that the file may name.  Given, a class named in the
        file must be one of them and **nothing is imported**; None (the default) imports the
        module the file names.

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
    TypeError
        If ``classes`` is not None or an iterable of :class:`numrnn.nn.Module` subclasses.
    ValueError
        If :func:`load_npz` refuses the file, its arrays do not fit its config, or a class it
        names cannot be imported, is not a :class:`numrnn.nn.Module` subclass, is not in
        ``classes``, fails to build from its config, or builds a module whose ``state_dict``
        does not match the saved arrays.

    Notes
    -----
    **Importing a module runs its top-level code.**  With ``classes=None`` a file can make this
    function import any module importable here (``importlib.import_module`` of the saved module
    path, a dotted name, never ``__main__``), as ``import`` would; only then is the named
    object checked, and an object that is not a :class:`numrnn.nn.Module` subclass is refused
    without being called.  The constructor of a class that passes runs with the saved config.
    Load files from sources you trust as much as the packages you have installed, or pass
    ``classes=[MyModel, ...]``, with which a file can name only those classes.  Files that
    hold only numrnn's own modules import nothing.
    """
    from numrnn import nn

    allowed = _allowed_classes(classes)
    config, arrays = load_npz(path, kind="module")
    try:
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        user_nodes = []
        params = _check_module(config.get("module"), arrays, "model/", user_nodes)
        expected = set(params)
        if config.get("optimizer") is not None:
            keyed = {name[len("model/"):]: arr for name, arr in params.items()}
            expected |= serialization.check_optimizer_arrays(config["optimizer"], keyed, arrays, "optim")
        unexpected = sorted(set(arrays) - expected)
        if unexpected:
            raise ValueError(f"unexpected arrays {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if user_nodes:
            for node in user_nodes:  # every import after every check of the file, before any build
                node["cls"] = _resolve_class(node["spec"], node["prefix"], allowed)
            module = _build(config["module"], "model/", {node["prefix"]: node for node in user_nodes})
        else:
            module = nn.module_from_spec(config["module"])
        module.load_state_dict({name[len("model/"):]: arr for name, arr in params.items()})
        optimizer = None
        if config.get("optimizer") is not None:
            optimizer = serialization.optimizer_from_arrays(config["optimizer"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot load {os.fspath(path)!r}: the saved model does not fit its config ({exc})") from None
    return module, optimizer


# ---------------------------------------------------------------- module classes of your own

#: ``type`` of the spec of a module saved by class path.
_CLASS = "class"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _describe(module, where):
    """The spec :func:`load` rebuilds ``module`` from: :func:`numrnn.nn.module_spec`'s for
    numrnn's modules; ``{"type": "class", "module", "qualname", "config"}`` for a module class of
    your own (checked to be loadable: see :func:`save`), also inside a Sequential."""
    from numrnn import nn
    from numrnn.nn.containers import _registry

    registry = _registry()
    cls = type(module)
    if registry.get(cls.__name__) is cls:
        if cls is not nn.Sequential:
            return nn.module_spec(module)
        names = list(module._children_dict())
        config = {"modules": [_describe(m, f"{where}[{n!r}]") for n, m in zip(names, module.modules)]}
        if names != [str(i) for i in range(len(names))]:
            config["names"] = names
        return {"type": "Sequential", "config": config}
    return _class_spec(module, where, sorted(registry))


def _class_spec(module, where, known):
    """The class-path spec of a module of the user's own class, after checking that :func:`load`
    can import and rebuild it; ``TypeError`` naming the class and what is missing otherwise."""
    from numrnn import nn

    cls = type(module)
    name = f"{cls.__module__}.{cls.__qualname__}"

    def refuse(why):
        raise TypeError(
            f"cannot describe a {cls.__name__}: only numrnn's modules {known} and "
            f"numrnn.nn.Module subclasses defined at the top level of an importable module with a config() "
            f"can be saved and rebuilt; {name} (at {where}) {why}"
        )

    if not issubclass(cls, nn.Module):
        refuse("is not a numrnn.nn.Module subclass")
    if "<locals>" in cls.__qualname__:
        refuse("is defined inside a function: io.load imports classes by path, and can import only one "
               "defined at the top level of a module")
    if "." in cls.__qualname__:
        refuse("is defined inside a class: define it at the top level of its module")
    if cls.__module__ == "__main__":
        refuse("is defined in __main__ (a script or notebook), which io.load in another process cannot "
               "import: move it into a module and import it from there")
    if getattr(sys.modules.get(cls.__module__), cls.__qualname__, None) is not cls:
        refuse(f"is not what importing {cls.__qualname__} from {cls.__module__} gives")
    if cls.config is nn.Module.config:
        refuse("does not define config(): it must return the keyword arguments that rebuild it, "
               "as a JSON-serialisable dict")
    config = module.config()
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        refuse(f"config() must return a dict with str keys, got {type(config).__name__}")
    try:
        config = json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as exc:
        refuse(f"config() must be JSON-serialisable (numbers, str, bool, None, lists and dicts): {exc}")
    try:
        twin = cls(**config)
    except Exception as exc:
        refuse(f"cannot be rebuilt by {cls.__qualname__}(**config()) ({type(exc).__name__}: {exc})")
    mismatch = _state_mismatch(_layout(twin.state_dict()), _layout(module.state_dict()))
    if mismatch:
        refuse(f"is not rebuilt by {cls.__qualname__}(**config()): its state_dict differs ({mismatch})")
    return {"type": _CLASS, "module": cls.__module__, "qualname": cls.__qualname__, "config": config}


def _layout(state):
    """``{name: (shape, dtype)}`` of a state dict."""
    return {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in state.items()}


def _state_mismatch(built, saved):
    """How the ``_layout`` ``saved`` differs from ``built`` (a module's), or "" if it does not."""
    missing = sorted(set(built) - set(saved))
    unexpected = sorted(set(saved) - set(built))
    if missing or unexpected:
        return f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    for k, (shape, dtype) in built.items():
        if saved[k] != (shape, dtype):
            return f"{k!r} is {saved[k][1]}{saved[k][0]}, the module's is {dtype}{shape}"
    return ""


def _check_class_spec(spec, arrays, prefix, user_nodes):
    """Check a class-path spec's form (nothing imported) and claim the arrays under ``prefix``;
    they are checked against the rebuilt module by :func:`_build`."""
    module, qualname = spec.get("module"), spec.get("qualname")
    if not isinstance(module, str) or not all(_IDENTIFIER.fullmatch(part) for part in module.split(".")):
        raise ValueError(f"{prefix}module: a class's module must be a dotted name, got {module!r}")
    if module == "__main__" or module.startswith("__main__."):
        raise ValueError(f"{prefix}module: classes from __main__ are not imported, got {module!r}")
    if not isinstance(qualname, str) or not _IDENTIFIER.fullmatch(qualname):
        raise ValueError(f"{prefix}qualname: a class's name must be an identifier (a top-level class), got {qualname!r}")
    found = {name: arr for name, arr in arrays.items() if name.startswith(prefix)}
    user_nodes.append({"spec": spec, "prefix": prefix, "arrays": found})
    return found


def _allowed_classes(classes):
    """``{"module:qualname": class}`` of load's ``classes`` (None: None, import by path)."""
    from numrnn import nn

    if classes is None:
        return None
    if isinstance(classes, (str, type)):
        raise TypeError(f"classes must be an iterable of classes or None, got {classes!r}")
    allowed = {}
    for cls in classes:
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise TypeError(f"classes must hold numrnn.nn.Module subclasses, got {cls!r}")
        allowed[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return allowed


def _resolve_class(spec, prefix, allowed):
    """The class a class-path spec names: from ``allowed`` (importing nothing), or imported."""
    import importlib

    from numrnn import nn

    module, qualname = spec["module"], spec["qualname"]
    where = f"{prefix}: class {module}.{qualname}"
    if allowed is not None:
        cls = allowed.get(f"{module}:{qualname}")
        if cls is None:
            raise ValueError(f"{where} is not one of classes={sorted(allowed)} (nothing was imported)")
        return cls
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"{where}: cannot import module {module!r} ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # the module's own code failed
        raise ValueError(f"{where}: importing module {module!r} raised {type(exc).__name__}: {exc}") from None
    cls = getattr(imported, qualname, None)
    if cls is None:
        raise ValueError(f"{where}: module {module!r} has no attribute {qualname!r}")
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"{where} is a {type(cls).__name__}, not a numrnn.nn.Module subclass (it was not called)")
    return cls


def _build(spec, prefix, user_nodes):
    """Build the module of a checked spec holding class-path specs (``user_nodes`` by prefix)."""
    from numrnn import nn

    node = user_nodes.get(prefix)
    if node is not None:
        cls, config = node["cls"], spec["config"]
        try:
            module = cls(**config)
        except Exception as exc:
            raise ValueError(f"{prefix}: {cls.__qualname__}(**config) raised {type(exc).__name__}: {exc}") from None
        saved = {name[len(prefix):]: (arr.shape, arr.dtype) for name, arr in node["arrays"].items()}
        mismatch = _state_mismatch(_layout(module.state_dict()), saved)
        if mismatch:
            raise ValueError(f"{prefix}: the arrays saved for {cls.__qualname__} do not fit the module its config "
                             f"builds ({mismatch})")
        return module
    if spec["type"] != "Sequential":
        return nn.module_from_spec(spec)
    config = spec["config"]
    names = config.get("names", [str(i) for i in range(len(config["modules"]))])
    modules = [_build(sub, f"{prefix}{name}.", user_nodes) for name, sub in zip(names, config["modules"])]
    return nn.Sequential(dict(zip(names, modules))) if "names" in config else nn.Sequential(*modules)


#: Gate blocks stacked in a recurrent layer's weights, by layer class name (from the cell registry).
_GATES = {family.layer: family.gates for family in FAMILIES.values()}
#: Module types of :mod:`numrnn.nn` without parameters (their config implies no arrays).
_PARAMETERLESS = ("LastStep", "Dropout", "Flatten", "Tanh", "ReLU", "Sigmoid")


def _check_module(spec, arrays, prefix, user_nodes=None):
    """Check that ``arrays`` hold every parameter the :func:`numrnn.nn.module_spec` ``spec`` implies.

    Nothing is built: the sizes in ``spec`` are checked against the arrays at hand, and the loop
    over layers stops at the first missing one, so a huge config fails fast.  A module saved by
    class path (only with ``user_nodes``, a list) claims every array under its prefix and is
    appended to ``user_nodes``, to be checked against the module its config builds.

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
            found.update(_check_module(sub, arrays, f"{prefix}{name}.", user_nodes))
        return found
    if kind == _CLASS and user_nodes is not None:
        return _check_class_spec(spec, arrays, prefix, user_nodes)
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
        return {prefix + k: check.expect_array(arrays, prefix + k, shape, dtype) for k, shape in shapes.items()}

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
                found[name] = check.expect_array(arrays, name, shape, dtype)
    return found
