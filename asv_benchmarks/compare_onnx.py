#!/usr/bin/env python
r"""numrnn inference against ONNX Runtime (CPU, 2 threads), side by side in one process.

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

Timing: after a warm-up call each (Numba compile or cache load, ONNX Runtime's first run), the
two are timed in alternation (A B, B A, ...) by :func:`compare_torch.interleaved`: each sample a
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


def forward_case(cell, size, folder, repeats, min_sample):
    """(numrnn s, onnxruntime s, max abs difference) for one forward call at ``size``."""
    import numrnn

    steps, batch, input_size, hidden = size
    layer = build(cell, input_size, hidden)
    path = os.path.join(folder, f"{cell}_{steps}_{batch}_{input_size}_{hidden}.onnx")
    numrnn.to_onnx(layer, path)
    sess = session(path)
    x = np.random.default_rng(0).normal(size=(steps, batch, input_size)).astype(np.float32)
    with numrnn.no_grad():
        y, _ = layer(x)
    err = float(np.max(np.abs(sess.run(["y"], {"x": x})[0] - y)))

    def ours():
        with numrnn.no_grad():
            layer(x)

    def theirs():
        sess.run(None, {"x": x})

    return _timed(ours, theirs, repeats, min_sample) + (err,)


def _timed(ours, theirs, repeats, min_sample):
    """(numrnn median, ORT median, numrnn fastest sample, ORT fastest sample), seconds per call."""
    minima = {}
    times = interleaved({"numrnn": ours, "onnxruntime": theirs}, repeats, min_sample, minima=minima)
    return times["numrnn"], times["onnxruntime"], minima["numrnn"], minima["onnxruntime"]


def step_case(cell, folder, repeats, min_sample):
    """(numrnn s, onnxruntime s, max abs difference) for one streaming step, B = 1."""
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
    y_t, state = layer.step(x_t, ours_state[0])
    out = sess.run(None, {"x": x_seq, **feed[0]})
    err = float(np.max(np.abs(out[0][0] - y_t)))

    def ours():
        ours_state[0] = layer.step(x_t, ours_state[0])[1]

    def theirs():
        out = sess.run(None, {"x": x_seq, **feed[0]})
        feed[0] = dict(zip(names, out[1:]))

    return _timed(ours, theirs, repeats, min_sample) + (err,)


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
    args = parser.parse_args(argv)
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
            for size_name in sizes:
                rows.append((cell.upper(), f"forward {SIZES[size_name]}",
                             *forward_case(cell, SIZES[size_name], folder, repeats, min_sample)))
                ours, theirs = rows[-1][2:4]
                print(*rows[-1][:2], fmt_time(ours), fmt_time(theirs), f"{theirs / ours:.2f}x", flush=True)
            if not args.no_step:
                rows.append((cell.upper(), f"step B=1 I={STEP_SIZE[0]} H={STEP_SIZE[1]}",
                             *step_case(cell, folder, repeats, min_sample)))
                ours, theirs = rows[-1][2:4]
                print(*rows[-1][:2], fmt_time(ours), fmt_time(theirs), f"{theirs / ours:.2f}x", flush=True)

    lines = [
        f"numrnn {numrnn.__version__} (Numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads) vs "
        f"ONNX Runtime {onnxruntime.__version__} ({THREADS} intra-op threads); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; median of {repeats} alternating samples of >= {min_sample} s",
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
