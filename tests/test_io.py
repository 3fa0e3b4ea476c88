"""Atomic .npz save/load: round trips, interrupted saves, corrupt and mismatched files."""

from __future__ import annotations

import os

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
    import json

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
