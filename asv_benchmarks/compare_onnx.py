#!/usr/bin/env python
r"""numrnn inference against ONNX Runtime (CPU, 2 threads), side by side.

Usage::

    python asv_benchmarks/compare_onnx.py                 # every size, about a minute
    python asv_benchmarks/compare_onnx.py --quick --cells lstm --out table.md

What is measured
----------------
Forward
    ``with numrnn.no_grad(): layer(x)`` for a one-layer float32 :class:`numrnn.LSTM` /
    :class:`numrnn.GRU` in eval mode, against ``session.run(None, {"x": x})`` of the same layer
    exported by :func:`numrnn.to_onnx` (one ONNX ``LSTM`` / ``GRU`` node), at
    (T, B, I, H) = (64, 32, 1, 32), (100, 64, 16, 128), (50, 128, 256, 512).  Both return the
    output sequence and the final state, from a zero initial state; the outputs are checked to
    agree (max abs difference printed) before anything is timed.
Single step
    Streaming, B = 1, I = 1, H = 64: numrnn ``layer.step(x_t, state)`` against one
    ``session.run`` of the graph exported with ``state_inputs=True`` on a (1, 1, 1) input, the
    state fed back on both sides.

Timing: by default each framework is timed in a child process of its own, the two run in
alternation three times (A B, B A, A B); in one process, ONNX Runtime's spinning intra-op
threads and numrnn's (Numba's OpenMP) took each other's cores: numrnn's forward measured 599 us
there against 171 us alone at (64, 32, 1, 32), 6.41 ms against 3.18 ms at (100, 64, 16, 128).
``--same-process`` times both in this process.  In each process, after a warm-up call
(Numba compile or cache load, ONNX Runtime's first run), calls are timed by
:func:`compare_torch.interleaved`: each sample a
block of calls lasting at least ``min_sample`` seconds after a 10 ms pause and one untimed
call; the table shows the median per call and ratio = ONNX Runtime time / numrnn time (> 1:
numrnn is faster); the ratio of the two fastest samples is shown too, being less sensitive to
other load on a shared machine.

Threads: ONNX Runtime ``intra_op_num_threads=2``, ``inter_op_num_threads=1``, sequential
execution; numrnn's Numba and BLAS thread pools are limited to 2 as well (``NUMBA_NUM_THREADS``
set before numrnn is imported, threadpoolctl for BLAS), so both use the same two cores.
Needs ``onnx`` and ``onnxruntime`` (the ``bench`` or ``onnx`` extra).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

THREADS = 2
os.environ.setdefault("NUMBA_NUM_THREADS", str(THREADS))  # before numba is imported

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_torch import REPO, interleaved  # noqa: E402  (the same alternating timer)

sys.path.insert(0, REPO)

SIZES = {
    "small": (64, 32, 1, 32),
    "medium": (100, 64, 16, 128),
    "large": (50, 128, 256, 512),
}
CELLS = ("lstm", "gru")
STEP_SIZE = (1, 64)  # (I, H), B = 1


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build(cell, input_size, hidden):
    import numrnn

    cls = {"lstm": numrnn.LSTM, "gru": numrnn.GRU}[cell]
    return cls(input_size, hidden, dtype=np.float32, seed=0).eval()


def forward_case(cell, size, folder, check=True):
    """``(numrnn call, onnxruntime call, max abs difference or None)`` for one forward at ``size``."""
    import numrnn

    steps, batch, input_size, hidden = size
    layer = build(cell, input_size, hidden)
    path = os.path.join(folder, f"{cell}_{steps}_{batch}_{input_size}_{hidden}.onnx")
    numrnn.to_onnx(layer, path)
    sess = session(path)
    x = np.random.default_rng(0).normal(size=(steps, batch, input_size)).astype(np.float32)
    err = None
    if check:
        with numrnn.no_grad():
            y, _ = layer(x)
        err = float(np.max(np.abs(sess.run(["y"], {"x": x})[0] - y)))

    def ours():
        with numrnn.no_grad():
            layer(x)

    def theirs():
        sess.run(None, {"x": x})

    return ours, theirs, err


def _timed(ours, theirs, repeats, min_sample):
    """(numrnn median, ORT median, numrnn fastest sample, ORT fastest sample), seconds per call."""
    minima = {}
    times = interleaved({"numrnn": ours, "onnxruntime": theirs}, repeats, min_sample, minima=minima)
    return times["numrnn"], times["onnxruntime"], minima["numrnn"], minima["onnxruntime"]


def step_case(cell, folder, check=True):
    """``(numrnn call, onnxruntime call, max abs difference or None)`` for one streaming step, B = 1."""
    import numrnn

    input_size, hidden = STEP_SIZE
    layer = build(cell, input_size, hidden)
    path = os.path.join(folder, f"{cell}_step.onnx")
    numrnn.to_onnx(layer, path, state_inputs=True)
    sess = session(path)
    names = ["h0", "c0"][: layer.state_size]
    x_t = np.full((1, input_size), 0.5, np.float32)
    x_seq = x_t[None]
    zeros = np.zeros((1, 1, hidden), np.float32)
    ours_state = [(zeros, zeros) if cell == "lstm" else zeros]
    feed = [dict.fromkeys(names, zeros)]
    err = None
    if check:
        y_t, _ = layer.step(x_t, ours_state[0])
        err = float(np.max(np.abs(sess.run(None, {"x": x_seq, **feed[0]})[0][0] - y_t)))

    def ours():
        ours_state[0] = layer.step(x_t, ours_state[0])[1]

    def theirs():
        out = sess.run(None, {"x": x_seq, **feed[0]})
        feed[0] = dict(zip(names, out[1:]))

    return ours, theirs, err


def make_case(cell, case, folder, check=True):
    """The calls of ``case`` (a size name of :data:`SIZES`, or ``"step"``) for ``cell``."""
    if case == "step":
        return step_case(cell, folder, check)
    return forward_case(cell, SIZES[case], folder, check)


def child(framework, cell, case, repeats, min_sample):
    """In a child process: time one framework's call alone; prints ``median min`` (s per call)."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(THREADS), tempfile.TemporaryDirectory() as folder:
        ours, theirs, _ = make_case(cell, case, folder, check=False)
        minima = {}
        median = interleaved({framework: ours if framework == "numrnn" else theirs}, repeats, min_sample,
                             minima=minima)[framework]
    print(median, minima[framework])


def separate(cell, case, repeats, min_sample, rounds=3):
    """(numrnn median, ORT median, numrnn fastest, ORT fastest): each framework timed in its own
    child process, ``rounds`` times in alternation; medians of the children's medians."""
    import subprocess
    import statistics

    got = {"numrnn": [], "onnxruntime": []}
    for r in range(rounds):
        for framework in ("numrnn", "onnxruntime") if r % 2 == 0 else ("onnxruntime", "numrnn"):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", framework, cell, case,
                                  str(repeats), str(min_sample)], capture_output=True, text=True, check=True)
            got[framework].append([float(v) for v in out.stdout.split()[-2:]])
    med = {k: statistics.median(v[0] for v in vals) for k, vals in got.items()}
    low = {k: min(v[1] for v in vals) for k, vals in got.items()}
    return med["numrnn"], med["onnxruntime"], low["numrnn"], low["onnxruntime"]


def fmt_time(seconds):
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated: lstm,gru")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: small,medium,large")
    parser.add_argument("--no-step", action="store_true", help="skip the single-step comparison")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="samples per framework (default 15, quick 3)")
    parser.add_argument("--min-sample", type=float, default=None, help="seconds per sample (default 0.05)")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) here")
    parser.add_argument("--same-process", action="store_true",
                        help="time both in this process, alternating (their idle thread pools then compete)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        framework, cell, case, repeats, min_sample = args.child
        return child(framework, cell, case, int(repeats), float(min_sample))
    repeats = args.repeats or (3 if args.quick else 15)
    min_sample = args.min_sample or (0.01 if args.quick else 0.05)
    cells = [c for c in args.cells.split(",") if c]
    sizes = [s for s in args.sizes.split(",") if s]
    for c in cells:
        if c not in CELLS:
            parser.error(f"--cells: unknown cell {c!r}, choose from {CELLS}")
    for s in sizes:
        if s not in SIZES:
            parser.error(f"--sizes: unknown size {s!r}, choose from {list(SIZES)}")

    import numba
    import onnxruntime
    import threadpoolctl

    import numrnn

    rows = []
    with threadpoolctl.threadpool_limits(THREADS), tempfile.TemporaryDirectory() as folder:
        for cell in cells:
            for case in sizes + ([] if args.no_step else ["step"]):
                ours, theirs, err = make_case(cell, case, folder)  # outputs checked here, in any mode
                if args.same_process:
                    times = _timed(ours, theirs, repeats, min_sample)
                else:
                    times = separate(cell, case, repeats, min_sample)
                label = f"step B=1 I={STEP_SIZE[0]} H={STEP_SIZE[1]}" if case == "step" else f"forward {SIZES[case]}"
                rows.append((cell.upper(), label, *times, err))
                ours, theirs = rows[-1][2:4]
                print(*rows[-1][:2], fmt_time(ours), fmt_time(theirs), f"{theirs / ours:.2f}x", flush=True)

    lines = [
        f"numrnn {numrnn.__version__} (Numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads) vs "
        f"ONNX Runtime {onnxruntime.__version__} ({THREADS} intra-op threads); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; "
        + (f"median of {repeats} alternating samples of >= {min_sample} s in one process" if args.same_process else
           f"each framework in its own process, 3 alternating runs of {repeats} samples of >= {min_sample} s; "
           "medians of the runs' medians"),
        "",
        "| cell | case (T, B, I, H) | numrnn | ONNX Runtime | ratio (ORT / numrnn) | fastest samples: ratio "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell, case, ours, theirs, ours_min, theirs_min, err in rows:
        lines.append(f"| {cell} | {case} | {fmt_time(ours)} | {fmt_time(theirs)} | {theirs / ours:.2f}x "
                     f"| {theirs_min / ours_min:.2f}x | {err:.1e} |")
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")
    return rows


if __name__ == "__main__":
    main()
