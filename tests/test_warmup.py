"""First-use compilation: the one-line notice, the progress-bar notice, numrnn.warmup and
``python -m numrnn warmup``.

The subprocess tests share one empty ``NUMBA_CACHE_DIR`` (module fixture), so the whole
file compiles the RNN float64 kernels once, in two processes (a forward, then the
background compile of the default first use, which warms up the rest); every other
subprocess loads from that cache or fails on its arguments before compiling.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTICE = "numrnn: compiling"

FORWARD = textwrap.dedent(
    """
    import logging
    logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(levelname)s %(message)s")
    import numpy as np
    import numrnn
    x = np.zeros((3, 2, 2))
    for _ in range(2):  # two layers, two calls each: still one line
        layer = numrnn.RNN(2, 3, dtype=np.float64, backend="cpu", seed=0)
        layer(x)
        layer(x)
    print("forward done")
    """
)


def _run(args, cache, timeout=600, env=()):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **dict(env))
    env.pop("NUMRNN_NO_CACHE", None)
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("numba-cache")


def _notices(text):
    return [line for line in text.splitlines() if NOTICE in line]


@pytest.mark.slow
def test_compile_notice_once_then_silent_on_the_filled_cache(cache):
    first = _run(["-c", FORWARD], cache)
    assert first.returncode == 0, first.stderr
    notices = _notices(first.stderr)
    assert len(notices) == 1, first.stderr
    line = notices[0]
    assert line.startswith("LOG numrnn WARNING numrnn: compiling RNN float64 kernels (first use only; cached in ")
    assert str(cache) in line

    second = _run(["-c", FORWARD], cache)  # loads from the cache: Numba's compile event does not fire
    assert second.returncode == 0, second.stderr
    assert "forward done" in second.stdout
    assert _notices(second.stderr) == [], second.stderr


BACKGROUND = textwrap.dedent(
    """
    import logging, os
    logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(levelname)s %(message)s")
    import numpy as np
    import numrnn
    from numrnn.backends.cpu import first_use
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    layer = numrnn.RNN(2, 3, dtype=np.float64, backend="cpu", seed=0)
    y_numpy, _ = layer(x)
    dx_numpy, _ = layer.backward(np.ones_like(y_numpy))
    print("numpy tier:", not first_use.ready("rnn", np.float64))
    print("background exit:", first_use._launched[("rnn", "float64")].wait(timeout=600))
    y_compiled, _ = layer(x)
    dx_compiled, _ = layer.backward(np.ones_like(y_compiled))
    print("compiled tier:", first_use.ready("rnn", np.float64))
    print("agree:", np.allclose(y_numpy, y_compiled, rtol=1e-12, atol=0), np.allclose(dx_numpy, dx_compiled, rtol=1e-12, atol=1e-15))
    print("marker:", all(os.path.exists(first_use.marker_path("rnn", np.float64, part)) for part in first_use.PARTS))
    with open(os.path.join(first_use.cache_dir(), "numrnn-compile-rnn-float64.log")) as log:
        print("log:", "background compile of rnn float64:" in log.read())
    """
)


@pytest.mark.slow
def test_background_first_use_answers_on_numpy_then_switches(cache):
    """The default first use, in a fresh process on a cache without the RNN float64
    warm-up: NumPy answers at once, one line says so, a background process compiles the
    rest, and the same process then runs the compiled kernels without compiling."""
    result = _run(["-c", BACKGROUND], cache, env={"NUMRNN_FIRST_USE": "background"})
    assert result.returncode == 0, result.stderr
    for line in ("numpy tier: True", "background exit: 0", "compiled tier: True", "agree: True True", "marker: True",
                 "log: True"):
        assert line in result.stdout, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "not compiled yet" in line]
    assert len(lines) == 1 and lines[0].startswith("LOG numrnn WARNING numrnn: RNN float64 kernels are not compiled yet")
    assert _notices(result.stderr) == [], result.stderr  # the compiled kernels came from the cache
    assert "ready; using them from now on" in result.stderr


@pytest.mark.slow
def test_cli_warmup_compiles_then_loads(cache):
    first = _run(["-m", "numrnn", "warmup", "--cells", "rnn", "--dtypes", "float64"], cache)
    assert first.returncode == 0, first.stderr
    assert "rnn   float64" in first.stdout
    assert f"Numba cache: {cache}" in first.stdout
    assert _notices(first.stderr) == []  # the bar says it instead

    again = _run(["-m", "numrnn", "warmup", "--cells", "rnn", "--dtypes", "float64", "--no-progress"], cache)
    assert again.returncode == 0, again.stderr
    assert "loaded from the cache" in again.stdout, again.stdout
    assert _notices(again.stderr) == [], again.stderr  # everything the warm-up uses came from the cache

    where = _run(["-m", "numrnn", "cache-dir"], cache)
    assert where.returncode == 0 and where.stdout.startswith(str(cache)), where.stdout + where.stderr


@pytest.mark.parametrize(
    "args, named, given",
    [
        (["--cells", "lstm,foo"], "--cells", "'foo'"),
        (["--dtypes", "float16"], "--dtypes", "'float16'"),
        (["--cells", ","], "--cells", "','"),
    ],
)
def test_cli_bad_arguments(tmp_path, args, named, given):
    result = _run(["-m", "numrnn", "warmup", *args], tmp_path)
    assert result.returncode != 0
    assert named in result.stderr and given in result.stderr, result.stderr
    assert [names for _, _, names in os.walk(tmp_path) if names] == []  # refused before compiling anything


def test_cli_needs_a_command(tmp_path):
    result = _run(["-m", "numrnn"], tmp_path)
    assert result.returncode != 0 and "COMMAND" in result.stderr


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"cells": "lstm,foo"}, ValueError, ["cells", "'lstm', 'gru', 'rnn'", "'foo'"]),
        ({"cells": ()}, ValueError, ["cells", "at least one"]),
        ({"cells": 3}, TypeError, ["cells", "int"]),
        ({"dtypes": ["float32", 16]}, TypeError, ["dtypes", "16"]),
        ({"dtypes": "int32"}, ValueError, ["dtypes", "'float32', 'float64'", "'int32'"]),
        ({"progress": "yes"}, TypeError, ["progress", "bool", "'yes'"]),
    ],
)
def test_warmup_validates_arguments(kwargs, error, words):
    from numrnn.warmup import warmup

    with pytest.raises(error) as info:
        warmup(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_parse_names_normalises():
    import numpy as np

    from numrnn.warmup import CELLS, DTYPES, parse_names

    assert parse_names("cells", " LSTM, gru,lstm", CELLS) == ("lstm", "gru")
    assert parse_names("dtypes", [np.float32, np.dtype("float64")], DTYPES) == ("float32", "float64")


class _FakeEvent:
    def __init__(self, dispatcher, args):
        self.data = {"dispatcher": dispatcher, "args": args}


def test_compile_notice_on_a_bar_and_the_log_line(caplog):
    """The listener's path for one top-level compilation, fed a fake event (no compiling)."""
    from numba import types
    from tqdm import tqdm

    from numrnn import _jit
    from numrnn.backends import cpu

    event = _FakeEvent(cpu.gru_forward, (types.Array(types.float32, 3, "C"),))
    assert _jit._kernel_label(cpu.gru_forward, event.data["args"]) == "GRU float32"
    assert _jit._kernel_label(_FakeEvent, ()) is None  # not numrnn's
    saved = set(_jit._watch.logged)
    _jit._watch.logged.discard("GRU float32")
    bar = tqdm(total=10, file=io.StringIO(), mininterval=0)
    notice = _jit.compile_notice(bar)
    try:
        with caplog.at_level(logging.INFO, logger="numrnn"):
            for _ in range(2):
                _jit._watch.on_start(event)
                _jit._watch.on_end(event)
        assert [r.getMessage() for r in caplog.records].count(
            f"numrnn: compiling GRU float32 kernels (first use only; cached in {cpu.gru_forward.stats.cache_path})"
        ) == 1
        assert "compiling GRU float32 kernels" in bar.postfix
        start = bar.start_t
        time.sleep(0.05)  # the "compilation"
        notice.update(1)  # after a compile: its time leaves the clock, with the epoch counted
        assert bar.n == 1 and bar.last_print_n == 1 and bar.start_t >= start + 0.04
        assert bar.format_dict["elapsed"] < 0.04
        assert bar.format_dict["rate"] is None  # no rate from the compile time
        notice.update(1)
        assert bar.n == 2 and bar.format_dict["rate"] is not None
    finally:
        notice.close()
        bar.close()
        _jit._watch.logged.clear()
        _jit._watch.logged.update(saved)
    assert notice not in _jit._watch.observers
