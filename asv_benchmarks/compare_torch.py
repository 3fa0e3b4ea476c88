#!/usr/bin/env python
r"""numrnn against PyTorch (CPU) in one process: training step, GFLOP/s, memory, step latency.

Usage::

    python asv_benchmarks/compare_torch.py                      # all sizes, a few minutes
    python asv_benchmarks/compare_torch.py --quick --sizes small,medium --out table.md

What is measured
----------------
Training step
    ``layer.zero_grad(); y = layer(x); dx = layer.backward(dy)`` for numrnn, and
    ``module.zero_grad(); y = module(x); y.backward(dy)`` with ``x.requires_grad=True``
    for ``torch.nn.RNN`` / ``LSTM`` / ``GRU``: forward, backward, parameter gradients and
    the input gradient, float32, one layer, zero initial state, same weights (numrnn's
    ``params`` loaded into the torch module).  Both run in this process; after a warm-up
    (Numba compile or cache load, PyTorch's first-call set-up) the two are timed in
    alternation (A B, B A, ...), each sample a block of calls lasting at least
    ``min_sample`` seconds, preceded by a 10 ms pause and one untimed call (so the
    other framework's idle threads have stopped spinning), and the table shows the
    median per call.  Ratio = PyTorch time
    / numrnn time (> 1: numrnn is faster).
GFLOP/s
    Only the matrix products are counted, analytically, for one layer and direction with
    ``G`` gate blocks (RNN 1, LSTM 4, GRU 3)::

        forward   x_t W_ih^T, h W_hh^T                      2 T B G H (I + H)
        backward  dW_ih, dW_hh (weight gradients)            2 T B G H (I + H)
                  dx = d_pre W_ih, dh_prev = d_pre W_hh      2 T B G H (I + H)
        total                                               6 T B G H (I + H)

    The pointwise gate math (O(T B G H)) is not counted.  Both frameworks get the same
    count, so the GFLOP/s ratio equals the time ratio; the ``% SGEMM`` column divides by
    this process's NumPy SGEMM rate (1024 x 1024 float32 ``a @ b``, median).
Peak memory
    In a fresh process per framework (all cases in turn, one model alive at a time),
    with glibc's mmap threshold pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so freed
    arrays leave the resident set: build the model and the inputs, run one training
    step on a 1-step, 1-sequence input (code loading, thread pools, runtime set-up),
    read the resident set size, reset the kernel's high-water mark
    (``/proc/self/clear_refs``), run two training steps at full size, read the
    high-water mark (``VmHWM``).  Peak = high-water mark - resident size before: every
    byte a training step touches beyond the parameters and inputs -- saved activations,
    gradients, outputs, temporaries, and whatever one step keeps alive into the next --
    for numrnn (NumPy and Numba runtime allocations alike) and PyTorch alike.
    Linux only; page-granular (4 KiB).
Step latency
    Streaming inference, one sequence (B = 1), ``I = 1``, ``H = 64``: numrnn
    ``layer.step(x_t, state)`` in eval mode against ``torch.nn.LSTMCell`` (and
    ``GRUCell``, ``RNNCell``) under ``torch.no_grad()``, state fed back, median per call.
Cold start
    A fresh ``python`` process runs ``import numrnn`` and a first ``LSTM(1, 32)``
    forward on (64, 32, 1) zeros with Numba's on-disk cache already filled (by this
    process and one discarded run); the wall time of the whole process (interpreter
    start-up included) and the time from ``import numrnn`` to the forward's return,
    median of 3.

Threads: PyTorch ``torch.set_num_threads(os.cpu_count())``; Numba and the BLAS
libraries keep their defaults (all cores).  The header records them, the BLAS
kernels in use (via threadpoolctl, where installed) and ``OPENBLAS_*`` variables,
which select OpenBLAS's kernels for NumPy and SciPy (so for numrnn's products) but
not for PyTorch (oneDNN / MKL).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np

SIZES = {
    "small": (64, 32, 1, 32),
    "medium": (100, 64, 16, 128),
    "large": (50, 128, 256, 512),
}
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
#: Issue 5's targets for the ratio PyTorch time / numrnn time (LSTM and GRU).
TARGETS = {"small": 2.0, "medium": 1.2, "large": 0.9}
STEP_SIZE = (1, 64)  # (I, H) of the step-latency test, B = 1
STEP_TARGET_SPEEDUP = 10.0
STEP_TARGET_US = 5.0
COLD_START_TARGET_S = 2.0
#: Pause between timed blocks, so the other framework's spinning threads are asleep.
PAUSE_S = 0.01
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------- helpers


def flops_train_step(cell, steps, batch, input_size, hidden):
    """Matrix-product FLOPs of one training step (forward + backward), see the module docstring."""
    return 6 * steps * batch * GATES[cell] * hidden * (input_size + hidden)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_description():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed (pip install threadpoolctl to list BLAS kernels)"]
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS, the one Numba's np.dot calls)

    lines = []
    for pool in threadpool_info():
        name = os.path.basename(pool.get("filepath", "?"))
        if pool.get("user_api") == "blas":
            lines.append(
                f"BLAS {name}: {pool.get('internal_api')} {pool.get('version')}, "
                f"kernel {pool.get('architecture')}, {pool.get('num_threads')} threads"
            )
        else:
            lines.append(f"{pool.get('user_api')} {name}: {pool.get('num_threads')} threads")
    return lines


def git_revision(package_root):
    """``<commit>[ + uncommitted changes]`` of the numrnn that was imported, if it is this checkout."""
    if os.path.realpath(package_root) != os.path.realpath(REPO):
        return f"imported from {package_root}"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "numrnn"],
            cwd=REPO, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"git {rev}{' + uncommitted changes in numrnn/' if dirty else ''}" if rev else "unknown"


def package_root():
    """The folder holding the imported ``numrnn`` package (put first on child processes' PYTHONPATH)."""
    import numrnn

    return os.path.dirname(os.path.dirname(os.path.abspath(numrnn.__file__)))


def child_env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = package_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def calibrate(fn, min_sample):
    """Calls per sample so that one sample lasts at least ``min_sample`` seconds, and
    the seconds of one call: ``(calls, seconds)``.

    The first call is left out (it may compile, load a cache or plan a fast path: a
    streaming LSTM step took 118 us then and 4.4 us after), and the rate is taken
    over calls lasting at least a tenth of ``min_sample``: sized from one first call,
    a sample of that step was 420 calls (2 ms) instead of 11,000, and timed the
    wake-up after each pause more than the step (16-19 us per call).
    """
    fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample / 10:
            break
    once = max(elapsed / calls, 1e-7)
    return max(1, int(np.ceil(min_sample / once))), once


def spread(values):
    """Interquartile range relative to the median (0.1 = 10 %)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


def interleaved(fns, repeats, min_sample, spreads=None, minima=None):
    """Median seconds per call of each callable in ``fns`` (a dict), timed in alternation.

    When ``spreads`` / ``minima`` are dicts, they receive each callable's :func:`spread`
    and fastest sample.
    """
    numbers = {name: calibrate(fn, min_sample)[0] for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, number = fns[name], numbers[name]
            # The frameworks keep separate thread pools (Numba's, OpenBLAS's, PyTorch's
            # OpenMP) whose idle threads spin for a while after a parallel region: let
            # them go to sleep, and run one untimed call, before timing a block.
            time.sleep(PAUSE_S)
            fn()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    if spreads is not None:
        spreads.update({name: spread(values) for name, values in samples.items()})
    if minima is not None:
        minima.update({name: min(values) for name, values in samples.items()})
    return {name: statistics.median(values) for name, values in samples.items()}


def repeats_for(seconds_per_round, quick):
    """Alternation rounds: as many as fit in a per-case budget, within [lo, hi]."""
    lo, hi, budget = (3, 7, 2.0) if quick else (5, 21, 12.0)
    return int(min(hi, max(lo, budget // max(seconds_per_round, 1e-9))))


def sgemm_rate(repeats, n=1024):
    """GFLOP/s of NumPy's float32 n x n matrix product (median of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def torch_sgemm_rate(torch, repeats, n=1024):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def markdown_table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    lines = [fmt(header), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"]
    return "\n".join([lines[0], lines[1]] + [fmt(r) for r in rows])


# ---------------------------------------------------------------------- models


def make_pair(torch, cell, input_size, hidden):
    """A seeded numrnn layer and a torch module holding the same float32 weights."""
    import numrnn

    layer = {"rnn": numrnn.RNN, "lstm": numrnn.LSTM, "gru": numrnn.GRU}[cell](
        input_size, hidden, dtype=np.float32, backend="cpu", seed=0
    )
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](input_size, hidden)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.params.items()})
    return layer, module


def step_functions(torch, layer, module, x, dy):
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    dy_t = torch.from_numpy(dy.copy())

    def numrnn_step():
        layer.zero_grad()
        layer.forward(x)
        return layer.backward(dy)[0]

    def torch_step():
        module.zero_grad(set_to_none=True)
        x_t.grad = None
        y, _ = module(x_t)
        y.backward(dy_t)
        return x_t.grad

    return numrnn_step, torch_step


def inputs(size_or_shape, seed=1):
    steps, batch, input_size, hidden = size_or_shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
    dy = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    return x, dy


# ---------------------------------------------------------------------- parts


def run_training(torch, cells, sizes, quick, sgemm):
    rows = []
    min_sample = 0.005 if quick else 0.02
    for size in sizes:
        steps, batch, input_size, hidden = SIZES[size]
        for cell in cells:
            layer, module = make_pair(torch, cell, input_size, hidden)
            x, dy = inputs(SIZES[size])
            numrnn_step, torch_step = step_functions(torch, layer, module, x, dy)
            for _ in range(2):  # warm-up: compile / cache load, first-call set-up
                dx_numrnn = numrnn_step()
                dx_torch = torch_step()
            diff = float(np.max(np.abs(dx_numrnn - dx_torch.numpy())))
            scale = float(np.max(np.abs(dx_torch.numpy()))) or 1.0
            _, t_numrnn = calibrate(numrnn_step, 0)
            _, t_torch = calibrate(torch_step, 0)
            repeats = repeats_for(max(t_numrnn, min_sample) + max(t_torch, min_sample), quick)
            spreads, minima = {}, {}
            med = interleaved({"numrnn": numrnn_step, "torch": torch_step}, repeats, min_sample, spreads, minima)
            flops = flops_train_step(cell, steps, batch, input_size, hidden)
            ratio = med["torch"] / med["numrnn"]
            target = TARGETS[size] if cell in ("lstm", "gru") else None
            gf_numrnn, gf_torch = flops / med["numrnn"] / 1e9, flops / med["torch"] / 1e9
            rows.append(
                [
                    cell,
                    f"{size} {SIZES[size]}",
                    f"{med['numrnn'] * 1e3:.3f}",
                    f"{med['torch'] * 1e3:.3f}",
                    f"{ratio:.2f}",
                    f"{minima['torch'] / minima['numrnn']:.2f}",
                    "-" if target is None else f">= {target} {'met' if ratio >= target else 'MISSED'}",
                    f"{gf_numrnn:.1f}",
                    f"{gf_torch:.1f}",
                    f"{100 * gf_numrnn / sgemm:.0f}%",
                    f"{diff / scale:.1e}",
                    f"{repeats} / {100 * max(spreads.values()):.0f}%",
                ]
            )
            print(f"  ... {cell} {size}: numrnn {med['numrnn'] * 1e3:.3f} ms, torch {med['torch'] * 1e3:.3f} ms", file=sys.stderr)
            del layer, module
            gc.collect()
    header = [
        "cell", "size (T, B, I, H)", "numrnn ms", "torch ms", "torch/numrnn", "ratio of minima", "target",
        "numrnn GFLOP/s", "torch GFLOP/s", "numrnn % SGEMM", "dx rel. diff", "rounds / IQR",
    ]
    return markdown_table(header, rows)


def run_step_latency(torch, cells, quick):
    import numrnn

    input_size, hidden = STEP_SIZE
    rows = []
    min_sample = 0.005 if quick else 0.02
    for cell in cells:
        layer = {"rnn": numrnn.RNN, "lstm": numrnn.LSTM, "gru": numrnn.GRU}[cell](
            input_size, hidden, dtype=np.float32, backend="cpu", seed=0
        ).eval()
        torch_cell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell](
            input_size, hidden
        )
        torch_cell.load_state_dict(
            {name.replace("_l0", ""): torch.from_numpy(v.copy()) for name, v in layer.params.items()}
        )
        x_np = np.random.default_rng(0).standard_normal((1, input_size)).astype(np.float32)
        x_torch = torch.from_numpy(x_np.copy())
        state = {"numrnn": layer.step(x_np)[1], "torch": None}

        def numrnn_call():
            _, state["numrnn"] = layer.step(x_np, state["numrnn"])

        def torch_call():
            with torch.no_grad():
                out = torch_cell(x_torch, state["torch"])
            state["torch"] = out

        for _ in range(50):
            numrnn_call()
            torch_call()
        med = interleaved({"numrnn": numrnn_call, "torch": torch_call}, 7 if quick else 21, min_sample)
        speedup = med["torch"] / med["numrnn"]
        us = med["numrnn"] * 1e6
        target = "-"
        if cell == "lstm":
            ok = speedup >= STEP_TARGET_SPEEDUP and us < STEP_TARGET_US
            target = f">= {STEP_TARGET_SPEEDUP:g}x and < {STEP_TARGET_US:g} us {'met' if ok else 'MISSED'}"
        rows.append([cell, f"{us:.2f}", f"{med['torch'] * 1e6:.2f}", f"{speedup:.2f}", target])
    header = ["cell", "numrnn step us", "torch RNNCell/LSTMCell/GRUCell us", "speed-up", "target"]
    return markdown_table(header, rows)


COLD_START_CODE = """
import time
start = time.perf_counter()
import numpy as np
import numrnn
layer = numrnn.LSTM(1, 32, seed=0)
layer(np.zeros((64, 32, 1), dtype=np.float32))
print(time.perf_counter() - start)
"""


def run_cold_start():
    env = child_env()
    walls, inner = [], []
    for run in range(4):  # run 0 fills the cache (if this process did not already) and is discarded
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD_START_CODE], env=env, capture_output=True, text=True, timeout=600
        )
        wall = time.perf_counter() - start
        if out.returncode != 0:
            return f"cold start failed:\n{out.stderr[-2000:]}"
        if run:
            walls.append(wall)
            inner.append(float(out.stdout.strip().splitlines()[-1]))
    wall, imp = statistics.median(walls), statistics.median(inner)
    verdict = "met" if wall < COLD_START_TARGET_S else "MISSED"
    return markdown_table(
        ["fresh process, cache filled", "seconds (median of 3)", "target"],
        [
            ["whole process (interpreter start + import numrnn + first LSTM forward)", f"{wall:.2f}", f"< {COLD_START_TARGET_S:g} s {verdict}"],
            ["import numrnn + first LSTM forward", f"{imp:.2f}", "-"],
        ],
    )


# ---------------------------------------------------------------------- memory (worker processes)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_worker(framework, cases):
    """Run in a fresh process: peak RSS growth of two training steps per (cell, size); prints JSON."""
    import torch

    torch.set_num_threads(os.cpu_count())
    pick = 0 if framework == "numrnn" else 1
    results = {}
    for cell, size in cases:
        _, _, input_size, hidden = SIZES[size]
        # Both models exist in both workers (symmetric baseline); only one framework runs.
        layer, module = make_pair(torch, cell, input_size, hidden)
        tiny = step_functions(torch, layer, module, *inputs((1, 1, input_size, hidden), seed=3))[pick]
        full = step_functions(torch, layer, module, *inputs(SIZES[size]))[pick]
        tiny()
        gc.collect()
        before = _rss_bytes()
        _reset_hwm()
        full()
        full()
        results[f"{cell}/{size}"] = _hwm_bytes() - before
        del layer, module, tiny, full
        gc.collect()
    print(json.dumps(results))


def run_memory(cells, sizes):
    try:
        _reset_hwm()
        _hwm_bytes()
    except OSError as exc:
        return f"peak memory not measured: /proc/self/clear_refs or VmHWM unavailable ({exc})"
    cases = [(cell, size) for size in sizes for cell in cells]
    env = child_env(MALLOC_MMAP_THRESHOLD_="65536")
    peaks = {}
    for framework in ("numrnn", "torch"):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-worker", framework, json.dumps(cases)],
            env=env, capture_output=True, text=True, timeout=900,
        )
        if out.returncode != 0:
            return f"peak memory worker ({framework}) failed:\n{out.stderr[-2000:]}"
        peaks[framework] = json.loads(out.stdout.strip().splitlines()[-1])
    rows = []
    for cell, size in cases:
        key = f"{cell}/{size}"
        a, b = peaks["numrnn"][key], peaks["torch"][key]
        rows.append(
            [cell, size, f"{a / 2**20:.2f}", f"{b / 2**20:.2f}", f"{a / b:.2f}" if b else "-", "met" if a <= b else "MISSED"]
        )
    return markdown_table(
        ["cell", "size", "numrnn peak MiB", "torch peak MiB", "numrnn/torch", "target numrnn <= torch"], rows
    )


# ---------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter samples (a rough look)")
    parser.add_argument("--sizes", default="small,medium,large", help="comma-separated subset of small,medium,large")
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated subset of rnn,lstm,gru")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    parser.add_argument("--memory-worker", nargs=2, metavar=("FRAMEWORK", "CASES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_worker:
        framework, cases = args.memory_worker
        memory_worker(framework, [tuple(c) for c in json.loads(cases)])
        return 0

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for s in sizes:
        if s not in SIZES:
            parser.error(f"--sizes: unknown size {s!r}, expected some of {', '.join(SIZES)}")
    for c in cells:
        if c not in CELLS:
            parser.error(f"--cells: unknown cell {c!r}, expected some of {', '.join(CELLS)}")

    import numba
    import torch

    import numrnn

    torch.set_num_threads(os.cpu_count())
    started = time.perf_counter()
    report = []

    def emit(text=""):
        print(text, flush=True)
        report.append(text)

    def section(title, fn, *fn_args, note=None):
        emit(title)
        emit()
        if note:
            emit(note)
            emit()
        t0 = time.perf_counter()
        emit(fn(*fn_args))
        emit()
        print(f"  ({title.lstrip('# ').split(' (')[0]}: {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    emit(f"# numrnn vs PyTorch (CPU){' --quick' if args.quick else ''}")
    emit()
    emit(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    emit(f"- CPU: {cpu_model()}, os.cpu_count() = {os.cpu_count()}")
    load = os.getloadavg()
    emit("- load average (1, 5, 15 min) at start: " + ", ".join(f"{v:.2f}" for v in load))
    if load[0] > 0.5 * (os.cpu_count() or 1):
        emit(f"- WARNING: other processes keep {load[0]:.1f} cores busy out of {os.cpu_count()}: "
             "multi-threaded timings (both frameworks) will be slow and noisy")
    emit(
        f"- threads: torch {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
        f"numba {numba.get_num_threads()}"
    )
    for line in blas_description():
        emit(f"- {line}")
    openblas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    emit(f"- OPENBLAS_* environment: {openblas_env or 'none set'}")
    emit(
        f"- versions: numrnn {numrnn.__version__} ({git_revision(package_root())}), numba {numba.__version__}, "
        f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}"
    )

    sgemm = sgemm_rate(5 if args.quick else 15)
    torch_sgemm = torch_sgemm_rate(torch, 5 if args.quick else 15)
    emit(f"- NumPy SGEMM 1024x1024 float32 (this environment): {sgemm:.1f} GFLOP/s; torch.mm: {torch_sgemm:.1f} GFLOP/s")
    if openblas_env:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import compare_torch as c; "
            "rate = c.sgemm_rate(int(sys.argv[2])); "
            "kernels = [line.split(', kernel ')[1].split(',')[0] for line in c.blas_description() if ', kernel ' in line]; "
            "print(','.join(sorted(set(kernels))) or 'unknown', rate)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), "5" if args.quick else "15"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        if out.returncode == 0:
            kernel, rate = out.stdout.split()[-2:]
            emit(f"- NumPy SGEMM with OPENBLAS_* unset (OpenBLAS kernel {kernel}): {float(rate):.1f} GFLOP/s "
                 "(for reference: numrnn and the rest of this report ran with the environment above)")
    emit()

    section("## Training step (forward + backward, input gradient included), median per call",
            run_training, torch, cells, sizes, args.quick, sgemm,
            note="FLOPs = 6 T B G H (I + H), G = 1 (RNN), 4 (LSTM), 3 (GRU): matrix products only; "
                 "% SGEMM against NumPy's rate above; dx rel. diff = max abs(dx numrnn - dx torch) / max abs(dx torch); "
                 "rounds = alternations timed (each a block of calls of at least 5 ms, 20 ms without --quick); "
                 "IQR = interquartile range / median of the noisier framework (large: the machine was busy); "
                 "ratio of minima = the same ratio from each framework's fastest sample (close to the median ratio "
                 "when the machine was quiet).")
    section(f"## Streaming step(), B = 1, I = {STEP_SIZE[0]}, H = {STEP_SIZE[1]}, median per call (torch under no_grad)",
            run_step_latency, torch, cells, args.quick)
    section("## Peak memory of a training step (RSS high-water mark growth over two steps, fresh process per framework)",
            run_memory, cells, sizes)
    section("## Cold start", run_cold_start)
    emit("load average (1, 5, 15 min) at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
         + f"; total {time.perf_counter() - started:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
