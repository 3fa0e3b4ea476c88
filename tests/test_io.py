"""Atomic .npz save/load: round trips, interrupted and concurrent saves, corrupt, mismatched and crafted files."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import numrnn
from numrnn import io as nio
from numrnn import nn
from numrnn.optim import Adam


def write(path, value=1.0):
    nio.save_npz(path, "demo", {"value": value, "nested": {"a": [1, 2]}}, {"w": np.full(3, value), "i": np.arange(4)})


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "m.npz"
    arrays = {"w": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32), "b/x": np.arange(3)}
    nio.save_npz(path, "demo", {"a": 1, "s": "x", "f": 0.1}, arrays)
    config, loaded = nio.load_npz(str(path), kind="demo")
    assert config == {"a": 1, "s": "x", "f": 0.1}
    assert set(loaded) == set(arrays)
    for k in arrays:
        assert loaded[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(loaded[k], arrays[k])


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    write(path, 1.0)
    before = path.read_bytes()

    def crash(fd):
        raise KeyboardInterrupt  # the process is interrupted after writing, before the rename

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write(path, 2.0)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # the temporary file was removed
    assert nio.load_npz(path)[0]["value"] == 1.0


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    write(path, 1.0)

    def half_written(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        write(path, 2.0)
    monkeypatch.undo()
    assert nio.load_npz(path)[0]["value"] == 1.0
    assert os.listdir(tmp_path) == ["m.npz"]


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    write(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        nio.load_npz(path)


def test_corrupt_bytes_are_detected(tmp_path):
    path = tmp_path / "m.npz"
    nio.save_npz(path, "demo", {}, {"w": np.zeros(1000)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored array
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot load"):
        nio.load_npz(path)


def test_edited_array_fails_its_digest(tmp_path):
    path = tmp_path / "m.npz"
    write(path)
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    contents["w"] = contents["w"] + 1
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="array 'w' does not match its digest"):
        nio.load_npz(path)
    del contents["w"]
    np.savez(path, **contents)
    with pytest.raises(ValueError, match=r"arrays missing \['w'\]"):
        nio.load_npz(path)


def test_not_a_numrnn_file(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2))
    with pytest.raises(ValueError, match="not written by numrnn"):
        nio.load_npz(plain)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="cannot load"):
        nio.load_npz(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(2))
    with pytest.raises(ValueError, match="single array"):
        nio.load_npz(single)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, __numrnn__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot load"):
        nio.load_npz(pickled)
    with pytest.raises(FileNotFoundError):
        nio.load_npz(tmp_path / "missing.npz")


def test_kind_and_version_mismatch(tmp_path):
    path = tmp_path / "m.npz"
    write(path)
    with pytest.raises(ValueError, match="holds a 'demo', expected a 'forecaster'"):
        nio.load_npz(path, kind="forecaster")
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    meta = json.loads(str(contents["__numrnn__"][()]))
    meta["version"] = nio.FORMAT_VERSION + 1
    contents["__numrnn__"] = np.array(json.dumps(meta))
    np.savez(path, **contents)
    with pytest.raises(ValueError, match="format version"):
        nio.load_npz(path)


def test_bad_save_arguments(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        nio.save_npz(tmp_path / "a.npz", "demo", {"x": object()}, {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        nio.save_npz(tmp_path / "a.npz", "demo", {"x": float("nan")}, {})
    with pytest.raises(TypeError, match="must be numeric"):
        nio.save_npz(tmp_path / "a.npz", "demo", {}, {"x": np.array(["a"])})
    with pytest.raises(ValueError, match="array names"):
        nio.save_npz(tmp_path / "a.npz", "demo", {}, {"__x": np.zeros(1)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nio.save_npz(tmp_path / "no" / "a.npz", "demo", {}, {})
    with pytest.raises(TypeError, match="path must be"):
        nio.save_npz(3, "demo", {}, {})
    assert os.listdir(tmp_path) == []


def test_module_and_optimizer_round_trip(tmp_path):
    model = nn.Sequential(numrnn.GRU(2, 5, seed=0), nn.LastStep(), nn.Linear(5, 3, seed=1))
    opt = Adam(lr=0.05)
    x = np.random.default_rng(0).normal(size=(6, 4, 2))
    out = model(x)
    model.backward(np.ones_like(out))
    opt.step(model.params, model.grads)
    path = tmp_path / "model.npz"
    nio.save(path, model, optimizer=opt)
    loaded, loaded_opt = nio.load(path)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded_opt.steps == 1 and loaded_opt.lr == 0.05
    for k, st in opt.state.items():
        for slot, value in st.items():
            np.testing.assert_array_equal(loaded_opt.state[k][slot], value)
    nio.save(path, numrnn.LSTM(1, 2, seed=3))
    layer, none = nio.load(path)
    assert isinstance(layer, numrnn.LSTM) and none is None
    with pytest.raises(TypeError, match="cannot describe"):
        nio.save(path, object())


# ---------------------------------------------------------------- crafted and hostile files


def raw_meta(path):
    """The metadata and arrays of a saved file, to edit and write back with :func:`rewrite`."""
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    return json.loads(str(contents.pop("__numrnn__")[()])), contents


def rewrite(path, meta, contents):
    np.savez(path, __numrnn__=np.array(json.dumps(meta)), **contents)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_member_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    meta = {"format": "numrnn", "version": 1, "kind": "demo", "config": {}, "digests": {"w": "0" * 64}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__numrnn__.npy", npy_bytes(np.array(json.dumps(meta))))
        zf.writestr("w", b"not an array")
    with pytest.raises(ValueError, match=r"cannot load .*member 'w' is not a \.npy array"):
        nio.load_npz(path)


def test_array_header_that_overstates_its_data_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    write(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = io.BytesIO()  # claims 8 TB, holds nothing
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    members["w.npy"] = header.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match=r"cannot load .*array 'w' declares .* but holds"):
        nio.load_npz(path)


def test_deeply_nested_metadata_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    deep = "[" * 100_000 + "]" * 100_000
    text = f'{{"format": "numrnn", "version": 1, "kind": "demo", "config": {deep}, "digests": {{}}}}'
    np.savez(path, __numrnn__=np.array(text))
    with pytest.raises(ValueError, match=r"cannot load .*nested deeper than"):
        nio.load_npz(path)
    shallow = "[" * 20 + '"[[[[{{{{"' + "]" * 20  # brackets inside strings do not count
    np.savez(path, __numrnn__=np.array(text.replace(deep, shallow)))
    assert nio.load_npz(path)[0] == json.loads(shallow)


def saved_model(path):
    model = nn.Sequential(numrnn.GRU(2, 3, seed=0), nn.LastStep(), nn.Linear(3, 1, seed=1))
    opt = Adam(lr=0.01)
    out = model(np.ones((4, 2, 2)))
    model.backward(np.ones_like(out))
    opt.step(model.params, model.grads)
    nio.save(path, model, optimizer=opt)


def _gru(meta):
    return meta["config"]["module"]["config"]["modules"][0]["config"]


def _opt(meta):
    return meta["config"]["optimizer"]


CRAFTED_CONFIGS = {
    "huge hidden_size": (
        lambda m, c: _gru(m).update(hidden_size=10**7),
        r"'model/0.weight_ih_l0' is float32\(9, 2\), its config implies float32\(30000000, 2\)",
    ),
    "huge num_layers": (lambda m, c: _gru(m).update(num_layers=10**12), r"array 'model/0.weight_ih_l1' is missing"),
    "bool size": (lambda m, c: _gru(m).update(hidden_size=True), "hidden_size must be an integer"),
    "zero size": (lambda m, c: _gru(m).update(input_size=0), "input_size must be"),
    "other dtype": (lambda m, c: _gru(m).update(dtype="float64"), r"float32\(9, 2\), its config implies float64\(9, 2\)"),
    "dict dtype": (lambda m, c: _gru(m).update(dtype={"names": ["a"]}), "dtype must be 'float32' or 'float64'"),
    "str bias": (lambda m, c: _gru(m).update(bias="yes"), "bias must be"),
    "bidirectional": (lambda m, c: _gru(m).update(bidirectional=True), "'model/0.weight_ih_l0_reverse' is missing"),
    "unknown module": (lambda m, c: m["config"]["module"].update(type="Evil"), "unknown module type 'Evil'"),
    "list type": (lambda m, c: m["config"]["module"].update(type=[]), r"unknown module type \[\]"),
    "modules not a list": (lambda m, c: m["config"]["module"]["config"].update(modules={}), "'modules' must be a list"),
    "spec not a dict": (lambda m, c: m["config"].update(module=[]), "module spec must be a dict"),
    "config not a dict": (lambda m, c: m.update(config=[]), "config must be a dict"),
    "unknown optimiser": (lambda m, c: _opt(m).update(type="Evil"), "unknown optimiser type 'Evil'"),
    "negative steps": (lambda m, c: _opt(m).update(steps=-1), r"steps must be an int >= 0"),
    "slots not a dict": (lambda m, c: _opt(m).update(slots=[]), "slots must be a dict"),
    "int slot": (lambda m, c: _opt(m)["slots"].update({"2.weight": ["exp_avg", 3]}), "slot names must be str"),
    "missing slot": (lambda m, c: _opt(m)["slots"].update({"2.weight": ["nope"]}), "'optim/nope/2.weight' is missing"),
    "state of no parameter": (lambda m, c: _opt(m)["slots"].update({"9.w": []}), "state for '9.w', which the model"),
    "wrong state shape": (
        lambda m, c: c.update({"optim/exp_avg/2.weight": np.zeros((5, 5), np.float32)}),
        r"is float32\(5, 5\), its config implies float32\(1, 3\)",
    ),
    "extra array": (lambda m, c: c.update({"junk": np.zeros(1)}), r"unexpected arrays \['junk'\]"),
}


@pytest.mark.parametrize("edit, message", list(CRAFTED_CONFIGS.values()), ids=list(CRAFTED_CONFIGS))
def test_config_is_checked_against_the_arrays_before_building(tmp_path, monkeypatch, edit, message):
    path = tmp_path / "model.npz"
    saved_model(path)
    meta, contents = raw_meta(path)
    edit(meta, contents)
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)

    def build(spec):
        raise AssertionError("a model was built before the file was checked")

    monkeypatch.setattr(nn, "module_from_spec", build)
    with pytest.raises(ValueError, match=f"cannot load .*{message}"):
        nio.load(path)


def test_huge_config_does_not_allocate(tmp_path):
    path = tmp_path / "model.npz"
    nio.save(path, nn.Linear(2, 1, seed=0))
    meta, contents = raw_meta(path)
    meta["config"]["module"]["config"].update(in_features=10**7, out_features=10**7)
    rewrite(path, meta, contents)
    with pytest.raises(ValueError, match="its config implies float32"):
        nio.load(path)


def test_not_a_regular_file_is_refused_without_blocking(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"cannot load {str(tmp_path)!r}: it is not a regular file")):
        nio.load_npz(tmp_path)
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    result = []

    def target():
        try:
            nio.load_npz(fifo)
        except Exception as exc:  # noqa: BLE001 - reported below
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # unblock the reader so it does not outlive the test
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail("load_npz blocked on a FIFO")
    assert len(result) == 1 and isinstance(result[0], ValueError), result
    assert "is not a regular file" in str(result[0]) and str(fifo) in str(result[0])


# The child saves an array and pauses after writing its temporary file, before the rename,
# until it reads a line on stdin (or is killed there).
PAUSED_WRITER = """
import os, sys
import numpy as np
from numrnn import io as nio

def pause(fd):
    print("paused", flush=True)
    sys.stdin.readline()

os.fsync = pause
nio.save_npz(sys.argv[1], "demo", {"value": 7.0}, {"w": np.zeros(1000)})
"""


def start_paused_writer(path):
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    timer = threading.Timer(120, proc.kill)  # a child that never pauses cannot hang the test
    timer.start()
    try:
        assert proc.stdout.readline() == "paused\n"
    finally:
        timer.cancel()
    return proc


@pytest.mark.skipif(os.name != "posix", reason="stale temporaries are recognised on POSIX only")
def test_save_removes_temporaries_of_killed_writers(tmp_path):
    path = tmp_path / "m.npz"
    proc = start_paused_writer(path)
    proc.kill()  # kill -9 between writing the temporary file and renaming it
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert len(os.listdir(tmp_path)) == 1 and os.listdir(tmp_path)[0].endswith(".tmp")
    write(path)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_keeps_temporaries_of_live_writers(tmp_path):
    path = tmp_path / "m.npz"
    proc = start_paused_writer(path)
    try:
        write(path, 1.0)  # must not remove the paused writer's temporary file
        assert len(os.listdir(tmp_path)) == 2
    finally:
        proc.communicate("\n", timeout=120)
    assert proc.returncode == 0
    assert os.listdir(tmp_path) == ["m.npz"]
    assert nio.load_npz(path)[0]["value"] == 7.0


CONCURRENT_WRITER = """
import sys
import numpy as np
from numrnn import io as nio

for i in range(20):
    nio.save_npz(sys.argv[1], "demo", {"value": float(i)}, {"w": np.full(10000, float(i))})
"""


def test_concurrent_writers_stay_atomic(tmp_path):
    path = tmp_path / "m.npz"
    write(path, 0.0)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(path)]) for _ in range(2)]
    try:
        for i in range(20):
            write(path, float(i))
            config, arrays = nio.load_npz(path)  # always a whole file, from one writer
            assert np.all(arrays["w"] == config["value"])
    finally:
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert os.listdir(tmp_path) == ["m.npz"]


# ---------------------------------------------------------------- the building blocks of numrnn.nn


def building_blocks_stack():
    return nn.Sequential(
        nn.Embedding(9, 4, padding_idx=0, seed=0), nn.Dropout(0.2, seed=1), numrnn.LSTM(4, 5, seed=2),
        nn.LastStep(), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3, seed=3), nn.ReLU(), nn.Flatten(), nn.Sigmoid(),
    )


def test_building_blocks_round_trip(tmp_path):
    model = building_blocks_stack()
    opt = Adam(lr=0.05)
    idx = np.random.default_rng(0).integers(0, 9, size=(6, 4))
    out = model(idx)
    model.backward(np.ones_like(out))
    opt.step(model.params, model.grads)  # LayerNorm's weight and bias move off ones and zeros
    path = tmp_path / "model.npz"
    nio.save(path, model, optimizer=opt)
    loaded, loaded_opt = nio.load(path)
    assert loaded.config() == model.config()
    assert [type(m) for m in loaded] == [type(m) for m in model]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded(idx), model(idx))
    assert set(loaded_opt.state) == set(opt.state) and "4.bias" in loaded_opt.state and "0.weight" in loaded_opt.state
    for k, st in opt.state.items():
        for slot, value in st.items():
            np.testing.assert_array_equal(loaded_opt.state[k][slot], value)
    assert loaded[1].p == 0.2 and loaded[1].seed == 1 and loaded[0].padding_idx == 0


@pytest.mark.parametrize(
    "module",
    [
        nn.Embedding(5, 3, padding_idx=-1, dtype=np.float64, seed=4),
        nn.LayerNorm((2, 3), eps=1e-3, dtype=np.float64),
        nn.LayerNorm(4, bias=False),
        nn.LayerNorm(4, elementwise_affine=False),
        nn.Dropout(0.7, seed=5),
        nn.Flatten(0, -2),
        nn.Tanh(),
        nn.ReLU(),
        nn.Sigmoid(),
    ],
    ids=repr,
)
def test_each_building_block_saves_and_loads(tmp_path, module):
    for k, v in module.params.items():
        v[...] = np.arange(v.size).reshape(v.shape) * 0.5 + 1
    path = tmp_path / "m.npz"
    nio.save(path, module)
    loaded, none = nio.load(path)
    assert none is None and type(loaded) is type(module) and loaded.config() == module.config()
    assert set(loaded.params) == set(module.params)
    for k, v in module.params.items():
        assert loaded.params[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded.params[k], v)


def saved_blocks(path):
    model = nn.Sequential(nn.Embedding(6, 3, seed=0), numrnn.GRU(3, 2, seed=1), nn.LastStep(), nn.LayerNorm(2),
                          nn.Dropout(0.5, seed=2), nn.Linear(2, 1, seed=3))
    nio.save(path, model)


def _block(meta, i):
    return meta["config"]["module"]["config"]["modules"][i]


CRAFTED_BLOCKS = {
    "huge num_embeddings": (
        lambda m, c: _block(m, 0)["config"].update(num_embeddings=10**9),
        r"'model/0.weight' is float32\(6, 3\), its config implies float32\(1000000000, 3\)",
    ),
    "bool embedding_dim": (
        lambda m, c: _block(m, 0)["config"].update(embedding_dim=True), "embedding_dim must be an integer"
    ),
    "embedding dtype": (lambda m, c: _block(m, 0)["config"].update(dtype="float64"), "its config implies float64"),
    "embedding str dtype": (lambda m, c: _block(m, 0)["config"].update(dtype="int8"), "dtype must be 'float32' or"),
    "normalized_shape not a list": (
        lambda m, c: _block(m, 3)["config"].update(normalized_shape=2), "normalized_shape must be a non-empty list"
    ),
    "empty normalized_shape": (lambda m, c: _block(m, 3)["config"].update(normalized_shape=[]), "non-empty list"),
    "huge normalized_shape": (
        lambda m, c: _block(m, 3)["config"].update(normalized_shape=[10**6, 10**6]),
        r"'model/3.weight' is float32\(2,\), its config implies float32\(1000000, 1000000\)",
    ),
    "too many axes": (lambda m, c: _block(m, 3)["config"].update(normalized_shape=[1] * 65), "65 axes"),
    "str axis": (lambda m, c: _block(m, 3)["config"].update(normalized_shape=["2"]), r"normalized_shape\[0\] must be"),
    "str elementwise_affine": (
        lambda m, c: _block(m, 3)["config"].update(elementwise_affine="yes"), "elementwise_affine must be a bool"
    ),
    "no affine, arrays kept": (
        lambda m, c: _block(m, 3)["config"].update(elementwise_affine=False),
        r"unexpected arrays \['model/3.bias', 'model/3.weight'\]",
    ),
    "no bias, array kept": (
        lambda m, c: _block(m, 3)["config"].update(bias=False), r"unexpected arrays \['model/3.bias'\]"
    ),
    "layer norm bias missing": (lambda m, c: c.pop("model/3.bias"), "'model/3.bias' is missing"),
    "unknown block": (lambda m, c: _block(m, 4).update(type="Dropout2d"), "unknown module type 'Dropout2d'"),
}


@pytest.mark.parametrize("edit, message", list(CRAFTED_BLOCKS.values()), ids=list(CRAFTED_BLOCKS))
def test_building_block_configs_are_checked_before_building(tmp_path, monkeypatch, edit, message):
    path = tmp_path / "model.npz"
    saved_blocks(path)
    meta, contents = raw_meta(path)
    edit(meta, contents)
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)

    def build(spec):
        raise AssertionError("a model was built before the file was checked")

    monkeypatch.setattr(nn, "module_from_spec", build)
    with pytest.raises(ValueError, match=f"cannot load .*{message}"):
        nio.load(path)


@pytest.mark.parametrize(
    "index, change, message",
    [
        (4, {"p": 1.5}, r"p must be a probability in \[0, 1\]"),
        (4, {"seed": -1}, "seed must be"),
        (4, {"rate": 0.5}, "rate"),
        (0, {"padding_idx": 6}, "padding_idx must lie in"),
        (3, {"eps": 0}, "eps must be a finite number > 0"),
    ],
)
def test_building_block_bad_settings_are_refused(tmp_path, index, change, message):
    path = tmp_path / "model.npz"
    saved_blocks(path)
    meta, contents = raw_meta(path)
    _block(meta, index)["config"].update(change)
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)
    with pytest.raises(ValueError, match=f"cannot load .*does not fit its config .*{message}"):
        nio.load(path)


def test_save_refuses_an_optimiser_that_load_cannot_rebuild(tmp_path):
    """LBFGS keeps state that io.load does not rebuild: saving it used to succeed and loading
    then failed; now save refuses, names the argument and writes nothing."""
    from numrnn import nn, optim

    path = tmp_path / "model.npz"
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    with pytest.raises(TypeError, match="optimizer must be one of SGD, Adam, AdamW"):
        nio.save(path, model, optim.LBFGS())
    assert not path.exists()


# ---------------------------------------------------------------- module classes of your own (by class path)

import io_user_models as user  # noqa: E402  (tests/ is on sys.path: conftest.py)


def trained(model, tokens):
    """``model`` after one Adam step, so no weight is at its initial value."""
    out = model(tokens)
    model.backward(np.ones_like(out))
    Adam(lr=0.05).step(model.params, model.grads)
    return model


def assert_same_weights(loaded, model):
    a, b = loaded.state_dict(), model.state_dict()
    assert list(a) == list(b)
    for k in b:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_user_module_round_trip_is_bitwise(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 7, size=(5, 3))
    model = trained(user.Tagger(7, 4, seed=3, dtype="float64"), tokens)
    opt = Adam(lr=0.01)
    out = model(tokens)
    model.backward(np.ones_like(out))
    opt.step(model.params, model.grads)
    path = tmp_path / "tagger.npz"
    nio.save(path, model, optimizer=opt)
    spec = raw_meta(path)[0]["config"]["module"]
    assert spec == {"type": "class", "module": "io_user_models", "qualname": "Tagger",
                    "config": {"vocab": 7, "hidden": 4, "seed": 3, "dtype": "float64"}}
    loaded, loaded_opt = nio.load(path)
    assert type(loaded) is user.Tagger and loaded.config() == model.config()
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded(tokens), model(tokens))
    assert set(loaded_opt.state) == set(opt.state) and "rnn.weight_hh_l0" in loaded_opt.state
    for k, st in opt.state.items():
        for slot, value in st.items():
            np.testing.assert_array_equal(loaded_opt.state[k][slot], value)
    again, _ = nio.load(path, classes=[user.Stacked, user.Tagger])  # the allow-list form
    np.testing.assert_array_equal(again(tokens), model(tokens))


def test_user_modules_nested_in_sequential_and_in_each_other(tmp_path):
    from collections import OrderedDict

    tokens = np.random.default_rng(1).integers(0, 6, size=(4, 2))
    model = nn.Sequential(OrderedDict(
        body=user.Stacked(6, 3, 2, seed=5), act=nn.ReLU(), head=nn.Linear(2, 2, seed=9),
    ))
    for name, v in model.params.items():  # every weight moved off its seeded value
        v += np.random.default_rng(len(name)).normal(size=v.shape).astype(v.dtype) * 0.1
    path = tmp_path / "nested.npz"
    nio.save(path, model)
    spec = raw_meta(path)[0]["config"]["module"]
    assert spec["type"] == "Sequential" and spec["config"]["names"] == ["body", "act", "head"]
    assert spec["config"]["modules"][0]["qualname"] == "Stacked"
    assert spec["config"]["modules"][2] == nn.module_spec(model.head)
    loaded, _ = nio.load(path)
    assert [type(m) for m in loaded] == [user.Stacked, nn.ReLU, nn.Linear]
    assert "body.scale" in loaded.state_dict() and "body.tagger.rnn.weight_ih_l0" in loaded.state_dict()
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded(tokens), model(tokens))
    plain = nn.Sequential(user.Tagger(3, 2), nn.Tanh())  # unnamed: "0", "1"
    nio.save(path, plain)
    assert "names" not in raw_meta(path)[0]["config"]["module"]["config"]
    assert_same_weights(nio.load(path)[0], plain)


def _local_class():
    class Local(user.NoConfig):
        def config(self):
            return {}

    return Local


MAIN_CLASS = type("Script", (user.NoConfig,), {"config": lambda self: {}, "__module__": "__main__"})


@pytest.mark.parametrize(
    "make, message",
    [
        (user.NoConfig, r"io_user_models.NoConfig \(at obj\) does not define config\(\)"),
        (user.ArrayConfig, r"io_user_models.ArrayConfig \(at obj\) config\(\) must be JSON-serialisable"),
        (user.ExtraConfig, r"cannot be rebuilt by ExtraConfig\(\*\*config\(\)\) \(TypeError: .*bogus"),
        (lambda: user.ForgetfulConfig(width=3),
         r"is not rebuilt by ForgetfulConfig\(\*\*config\(\)\): its state_dict differs \('head.weight' is "
         r"float32\(3, 3\), the module's is float32\(2, 2\)\)"),
        (user.Outer.Inner, "Outer.Inner \\(at obj\\) is defined inside a class"),
        (lambda: _local_class()(), r"<locals>.Local \(at obj\) is defined inside a function"),
        (MAIN_CLASS, r"__main__.Script \(at obj\) is defined in __main__"),
        (object, r"cannot describe a object: .*builtins.object \(at obj\) is not a numrnn.nn.Module subclass"),
    ],
    ids=["no config", "not json", "config a constructor refuses", "config misses a size", "nested class", "local class",
         "__main__", "not a module"],
)
def test_save_refuses_a_user_class_it_cannot_rebuild(tmp_path, make, message):
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match=message):
        nio.save(path, make())
    if make is not object:  # (a Sequential refuses to hold an object)
        with pytest.raises(TypeError, match=r"only numrnn's modules .* can be saved and rebuilt; .*\(at obj\['1'\]\)"):
            nio.save(path, nn.Sequential(nn.Tanh(), make()))  # inside a stack: named where it sits
    assert os.listdir(tmp_path) == []


def crafted_user_file(path, **spec):
    """A saved Tagger whose class-path spec is edited by ``spec`` (digests rewritten)."""
    nio.save(path, user.Tagger(5, 2, seed=1))
    meta, contents = raw_meta(path)
    meta["config"]["module"].update(spec)
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)


def test_a_file_naming_a_non_module_is_refused_without_calling_it(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    monkeypatch.delitem(sys.modules, "io_import_probe", raising=False)
    crafted_user_file(path, module="io_import_probe", qualname="Trap")
    with pytest.raises(ValueError, match=r"class io_import_probe.Trap is not one of classes=.*nothing was imported"):
        nio.load(path, classes=[user.Tagger])
    assert "io_import_probe" not in sys.modules  # with an allow-list, nothing is imported
    with pytest.raises(ValueError, match=r"io_import_probe.Trap is a type, not a numrnn.nn.Module subclass"):
        nio.load(path)
    probe = sys.modules["io_import_probe"]  # the import itself is the one side effect, as documented
    assert probe.CALLS == []
    crafted_user_file(path, module="io_user_models", qualname="NotAModule")
    with pytest.raises(ValueError, match="not a numrnn.nn.Module subclass"):
        nio.load(path)
    assert user.CALLS == []
    crafted_user_file(path, module="os", qualname="getcwd")
    with pytest.raises(ValueError, match=r"os.getcwd is a builtin_function_or_method, not a numrnn.nn.Module"):
        nio.load(path)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"module": "no_such_module_for_numrnn.sub"}, r"cannot import module 'no_such_module_for_numrnn.sub'"),
        ({"qualname": "Missing"}, r"module 'io_user_models' has no attribute 'Missing'"),
        ({"module": "__main__"}, "classes from __main__ are not imported"),
        ({"module": "os; import x"}, "a class's module must be a dotted name"),
        ({"module": ".relative"}, "a class's module must be a dotted name"),
        ({"module": ["os"]}, "a class's module must be a dotted name"),
        ({"qualname": "Outer.Inner"}, "a class's name must be an identifier"),
        ({"qualname": "f.<locals>.M"}, "a class's name must be an identifier"),
        ({"config": []}, "module spec must be a dict with a 'config' dict"),
        ({"config": {"vocab": 5, "hidden": 2, "seed": 1, "bogus": 1}}, r"Tagger\(\*\*config\) raised TypeError"),
        ({"config": {"vocab": 5, "hidden": 3, "seed": 1}},
         r"the arrays saved for Tagger do not fit the module its config builds \('embed.weight' is float32\(5, 2\)"),
    ],
    ids=["no such module", "no such class", "__main__", "not a name", "relative", "list module", "dotted qualname",
         "locals", "config not a dict", "config a constructor refuses", "config of other shapes"],
)
def test_a_crafted_class_path_is_refused(tmp_path, spec, message):
    path = tmp_path / "m.npz"
    crafted_user_file(path, **spec)
    with pytest.raises(ValueError, match=f"cannot load .*{message}"):
        nio.load(path)
    assert "no_such_module_for_numrnn" not in sys.modules


def test_arrays_of_a_user_module_are_checked_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nio.save(path, user.Tagger(5, 2, seed=1))
    meta, contents = raw_meta(path)
    contents["model/head.extra"] = np.zeros(2, np.float32)
    contents["model/rnn.bias_hh_l0"] = contents["model/rnn.bias_hh_l0"].astype(np.float64)
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)
    loads = []
    monkeypatch.setattr(user.Tagger, "load_state_dict", lambda self, sd: loads.append(sd))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['head.extra'\]"):
        nio.load(path)
    del contents["model/head.extra"]
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)
    with pytest.raises(ValueError, match=r"'rnn.bias_hh_l0' is float64\(8,\), the module's is float32\(8,\)"):
        nio.load(path)
    assert loads == []


def test_a_bad_file_imports_nothing(tmp_path, monkeypatch):
    """The arrays of numrnn's own parts and the optimiser are checked before any class is imported."""
    path = tmp_path / "m.npz"
    nio.save(path, nn.Sequential(user.Tagger(5, 2, seed=1), nn.Linear(5, 1, seed=0)))
    meta, contents = raw_meta(path)
    meta["config"]["module"]["config"]["modules"][0]["module"] = "io_import_probe"
    del contents["model/1.bias"]
    meta["digests"] = {name: nio._digest(arr) for name, arr in contents.items()}
    rewrite(path, meta, contents)
    monkeypatch.delitem(sys.modules, "io_import_probe", raising=False)
    with pytest.raises(ValueError, match="'model/1.bias' is missing"):
        nio.load(path)
    assert "io_import_probe" not in sys.modules


def test_load_checks_its_classes_argument(tmp_path):
    path = tmp_path / "m.npz"
    nio.save(path, user.Tagger(5, 2, seed=1))
    with pytest.raises(TypeError, match="classes must be an iterable of classes or None"):
        nio.load(path, classes=user.Tagger)
    with pytest.raises(TypeError, match="classes must hold numrnn.nn.Module subclasses, got <class 'int'>"):
        nio.load(path, classes=[int])
