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
