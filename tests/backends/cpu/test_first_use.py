"""numrnn.backends.cpu.first_use: which tier answers, when the background compile
starts, what is logged, and what happens when the background compile cannot start or
fails.  No process is started here; tests/test_warmup.py runs the whole first use in
fresh processes on an empty cache."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from numrnn.backends import cpu
from numrnn.backends.cpu import first_use, numpy_kernels
from numrnn.cells import cell_family


class _Process:
    def __init__(self, status=None):
        self.returncode = status

    def poll(self):
        return self.returncode


@pytest.fixture
def fresh(first_use_tier):
    """First use in "background" mode (``tests/conftest.py``); the list of the background
    compiles asked for (nothing starts)."""
    return first_use_tier("numpy")


def test_a_pair_not_compiled_runs_on_numpy_and_asks_once(fresh):
    family = cell_family("lstm")
    assert cpu.kernels_now(family, np.dtype(np.float32)) is numpy_kernels.KERNELS["lstm"]
    assert cpu.kernels_now(family, np.dtype(np.float32)) is numpy_kernels.KERNELS["lstm"]
    assert fresh == [("lstm", "float32")]
    assert cpu.CPUBackend().step_kernel(np.dtype(np.float32)) is None


def test_the_marker_switches_to_the_compiled_kernels(fresh, tmp_path, caplog):
    family = cell_family("gru_reset_before")
    assert cpu.kernels_now(family, np.dtype(np.float64)) is numpy_kernels.KERNELS["gru"]
    (tmp_path / "marker-layers-gru-float64").touch()  # what the background warm-up leaves halfway
    with caplog.at_level(logging.INFO, logger="numrnn"):
        assert cpu.kernels_now(family, np.dtype(np.float64)) is cpu.family_kernels(family)
    assert any("compiled GRU float64 kernels (layers) are ready" in r.getMessage() for r in caplog.records)
    # step() still runs on NumPy until the step kernels are marked too
    assert cpu.kernels_now(family, np.dtype(np.float64), "step") is numpy_kernels.KERNELS["gru"]
    assert not first_use.step_ready(np.float64)
    (tmp_path / "marker-step-gru-float64").touch()
    assert first_use.step_ready(np.float64)  # the warm-up of any family compiles step()'s one kernel
    assert cpu.kernels_now(family, np.dtype(np.float64), "step") is cpu.family_kernels(family)
    assert not first_use.step_ready(np.float32)
    assert fresh == [("gru", "float64")]  # one background compile for both parts


def test_compile_mode_and_caching_off_use_the_compiled_kernels(fresh, monkeypatch):
    monkeypatch.setattr(first_use, "_mode", "compile")
    assert first_use.ready("rnn", np.float32) and first_use.step_ready(np.float32)
    monkeypatch.setattr(first_use, "_mode", "background")
    monkeypatch.setattr(first_use, "_ready", set())
    monkeypatch.setattr(first_use, "marker_path", lambda kernel, dtype, part="layers": None)
    monkeypatch.setattr(first_use, "cache_dir", lambda: None)
    assert first_use.ready("lstm", np.float64) and first_use.step_ready(np.float64)
    assert fresh == []


def test_a_failed_background_compile_falls_back_to_compiling_here(fresh, caplog):
    assert not first_use.ready("rnn", np.float64)
    first_use._launched[("rnn", "float64")] = _Process(status=1)
    with caplog.at_level(logging.WARNING, logger="numrnn"):
        assert first_use.ready("rnn", np.float64)
    messages = [r.getMessage() for r in caplog.records]
    assert any("background compile of RNN float64 kernels failed (exit status 1" in m for m in messages), messages


def test_a_background_compile_that_cannot_start_compiles_here(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(first_use, "_mode", "background")
    monkeypatch.setattr(first_use, "_ready", set())
    monkeypatch.setattr(first_use, "_launched", {})
    monkeypatch.setattr(first_use, "cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(first_use.sys, "executable", str(tmp_path / "no-such-python"))
    with caplog.at_level(logging.WARNING, logger="numrnn"):
        assert first_use.ready("lstm", np.float64)  # this very call compiles here
    assert first_use._launched[("lstm", "float64")] is False
    assert any("could not start a background compile" in r.getMessage() for r in caplog.records)


def test_the_first_use_line_is_logged_once_per_pair(monkeypatch, tmp_path, caplog):
    """The real launcher, with a command that exits at once (no numrnn child)."""
    monkeypatch.setattr(first_use, "_mode", "background")
    monkeypatch.setattr(first_use, "_ready", set())
    monkeypatch.setattr(first_use, "_launched", {})
    monkeypatch.setattr(first_use, "cache_dir", lambda: str(tmp_path))
    started = []
    real_popen = first_use.subprocess.Popen

    def popen(command, **kwargs):
        started.append((command, kwargs["env"]))
        return real_popen([first_use.sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(first_use.subprocess, "Popen", popen)
    with caplog.at_level(logging.WARNING, logger="numrnn"):
        for _ in range(3):
            first_use.ready("gru", np.float32)
    lines = [r.getMessage() for r in caplog.records if "not compiled yet" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("numrnn: GRU float32 kernels are not compiled yet: NumPy kernels")
    assert str(tmp_path) in lines[0]
    (command, env), = started
    assert command[1:] == ["-m", "numrnn", "warmup", "--cells", "gru", "--dtypes", "float32", "--background"]
    assert env["NUMRNN_FIRST_USE"] == "compile" and env["NUMBA_NUM_THREADS"] == "1"
    first_use._launched[("gru", "float32")].wait(timeout=60)
    assert os.path.exists(tmp_path / "numrnn-compile-gru-float32.log")


def test_modes_are_validated(monkeypatch):
    with pytest.raises(ValueError, match=r"mode must be one of \('background', 'compile'\), got 'later'"):
        first_use.set_mode("later")
    with pytest.raises(TypeError, match="mode must be a str"):
        first_use.set_mode(1)
    previous = first_use.set_mode("compile")
    assert first_use.set_mode(previous) == "compile"
    monkeypatch.setenv("NUMRNN_FIRST_USE", "Eager")
    with pytest.raises(ValueError, match="NUMRNN_FIRST_USE must be one of .* got 'eager'"):
        first_use._mode_from_environment()


def test_markers_are_named_for_cell_dtype_and_sources():
    path = first_use.marker_path("lstm", np.float32)
    assert os.path.dirname(path) == first_use.cache_dir()
    name = os.path.basename(path)
    assert name.startswith("numrnn-compiled-lstm-float32-") and len(name.rsplit("-", 1)[1]) == 16
    step = os.path.basename(first_use.marker_path("lstm", np.float32, "step"))
    assert step == name.replace("numrnn-compiled-", "numrnn-compiled-step-")


def test_without_a_jit_there_is_no_cache_and_no_tier(monkeypatch):
    """NUMBA_DISABLE_JIT=1 makes the kernels plain functions: no cache, the "compiled" ones run."""
    from numrnn.backends.cpu import lstm

    monkeypatch.setattr(lstm, "lstm_forward", lstm.lstm_forward.py_func)
    monkeypatch.setattr(first_use, "_mode", "background")
    monkeypatch.setattr(first_use, "_ready", set())
    assert first_use.cache_dir() is None
    assert first_use.ready("lstm", np.float32) and first_use.step_ready(np.float32)
