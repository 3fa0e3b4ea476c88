#!/usr/bin/env python
"""One-shot device check of numrnn's CUDA backend: tests on the GPU, then timings vs cuDNN.

Run from the repository root on a machine with one NVIDIA GPU where numba-cuda and
PyTorch (CUDA build) are already installed; it downloads and installs nothing::

    python asv_benchmarks/gpu_check.py            # about 4-5 minutes

1. ``python -m pytest tests/backends/cuda`` on the real device (the same equality tests
   that CI runs under Numba's CUDA simulator), with a time cap.
2. Training-step time (forward + backward, float32) of numrnn ``backend="cuda"``
   (with NumPy in and out, and with device arrays in and out and the parameters
   and gradients on the device, ``device_output`` and ``device_params``)
   and of ``torch.nn.LSTM``/``GRU`` on cuDNN, for LSTM and GRU at
   (T, B, I, H) = (64, 32, 1, 32), (100, 64, 16, 128), (50, 128, 256, 512),
   (100, 8, 32, 256); plus the largest relative difference of numrnn's output
   from PyTorch's with the same weights.
3. ``step()`` latency at B = 1, H = 64 (numrnn CUDA, numrnn CPU, PyTorch CUDA).

It prints a Markdown table and, when the environment variable ``OUT`` names a
directory, writes ``gpu_check.md`` and ``gpu_check.json`` there, updated after
every measurement so a run cut short still leaves its results.  Every part
catches its own errors and reports them in the table instead of stopping.
``NUMRNN_GPU_CHECK_BUDGET`` (seconds, default 290) bounds the whole run;
``--skip-tests`` skips part 1; ``--tiny`` uses tiny sizes, to check the script itself
(``NUMBA_ENABLE_CUDASIM=1 python asv_benchmarks/gpu_check.py --tiny --skip-tests``
runs it without a GPU).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

os.environ.setdefault("NUMRNN_FIRST_USE", "compile")  # time the compiled kernels (on first use they compile here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

START = time.perf_counter()
BUDGET = float(os.environ.get("NUMRNN_GPU_CHECK_BUDGET", "290"))
TEST_BUDGET = 170.0  # seconds for part 1 (most of it compiles the CPU and CUDA kernels)
TIMING_RESERVE = 110.0  # seconds kept for parts 2 and 3
SIZES = [(64, 32, 1, 32), (100, 64, 16, 128), (50, 128, 256, 512), (100, 8, 32, 256)]
STEP_SIZE = (1, 16, 64)  # B, I, H for the step() latency

report = {"environment": {}, "tests": {}, "training": [], "step": [], "errors": []}


def elapsed():
    return time.perf_counter() - START


def remaining():
    return BUDGET - elapsed()


def log(message):
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


def save():
    """Write the report (Markdown and JSON) to $OUT, if set; never raises."""
    out = os.environ.get("OUT")
    if not out:
        return
    try:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gpu_check.md"), "w") as fh:
            fh.write(markdown())
        with open(os.path.join(out, "gpu_check.json"), "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    except Exception as exc:  # pragma: no cover - best effort
        print(f"could not write to $OUT: {exc}", flush=True)


def fmt_ms(value):
    return "n/a" if value is None else f"{value * 1e3:.3f}"


def markdown():
    env = report["environment"]
    lines = ["# numrnn GPU check", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    tests = report["tests"]
    if tests:
        lines += ["", "## CUDA tests on the device", "", f"- {tests.get('summary', 'n/a')} "
                  f"(exit code {tests.get('returncode')}, {tests.get('seconds', 0):.0f} s)"]
        lines += [f"  - {line}" for line in tests.get("failures", [])]
    lines += ["", "## Training step (forward + backward), float32, median ms", "",
              "| cell | T | B | I | H | numrnn cuda (all on device) | numrnn (NumPy in/out) | torch cuDNN | cuda / cuDNN | "
              "max rel diff vs torch | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["training"]:
        ratio = "n/a"
        best = row.get("numrnn_device") or row.get("numrnn_host")
        if best and row.get("torch"):
            ratio = f"{best / row['torch']:.2f}"
        diff = row.get("max_rel_diff")
        lines.append(
            f"| {row['cell']} | {row['T']} | {row['B']} | {row['I']} | {row['H']} | {fmt_ms(row.get('numrnn_device'))} | "
            f"{fmt_ms(row.get('numrnn_host'))} | {fmt_ms(row.get('torch'))} | {ratio} | "
            f"{'n/a' if diff is None else f'{diff:.1e}'} | {row.get('note', '')} |")
    lines += ["", "## step() latency, B = %d, I = %d, H = %d, float32, median ms" % STEP_SIZE, "",
              "| cell | numrnn cuda | numrnn cpu | torch cuda | note |", "|---|---|---|---|---|"]
    for row in report["step"]:
        lines.append(f"| {row['cell']} | {fmt_ms(row.get('numrnn_cuda'))} | {fmt_ms(row.get('numrnn_cpu'))} | "
                     f"{fmt_ms(row.get('torch'))} | {row.get('note', '')} |")
    if report["errors"]:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def error(where, exc):
    text = f"{where}: {type(exc).__name__}: {exc}"
    report["errors"].append(text)
    log(text)
    traceback.print_exc()
    save()
    return text


# ----------------------------------------------------------------------------- environment


def environment():
    env = report["environment"]
    env["python"] = platform.python_version()
    try:
        import numba

        env["numba"] = numba.__version__
        import numba_cuda

        env["numba-cuda"] = getattr(numba_cuda, "__version__", "?")
        from numba import cuda

        env["cuda available"] = cuda.is_available()
        if cuda.is_available():
            device = cuda.get_current_device()
            name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
            env["device"] = f"{name}, cc {device.compute_capability[0]}.{device.compute_capability[1]}, " \
                            f"{device.MULTIPROCESSOR_COUNT} SMs"
    except Exception as exc:
        error("numba-cuda", exc)
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["cudnn"] = torch.backends.cudnn.version()
            env["cudnn allow_tf32"] = torch.backends.cudnn.allow_tf32
    except Exception as exc:
        error("torch", exc)
    try:
        from numrnn.backends.cuda.config import CONFIG

        env["numrnn launch config"] = str(CONFIG)
    except Exception as exc:
        error("numrnn config", exc)
    save()


# ----------------------------------------------------------------------------- part 1: tests


def run_tests():
    budget = max(30.0, min(TEST_BUDGET, remaining() - TIMING_RESERVE))
    command = [sys.executable, "-m", "pytest", os.path.join("tests", "backends", "cuda"), "-v", "--tb=short",
               "-p", "no:cacheprovider", "--durations=5"]
    log(f"part 1: {' '.join(command[2:])} (cap {budget:.0f} s)")
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    begin = time.perf_counter()
    tests = report["tests"]
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget)
        output = result.stdout + result.stderr
        tests["returncode"] = result.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        tests["returncode"] = "timeout"
    tests["seconds"] = time.perf_counter() - begin
    lines = [line for line in output.strip().splitlines() if line.strip()]
    words = (" passed", " failed", " error", " skipped", " deselected", "no tests ran")
    passed = sum(" PASSED" in line for line in lines)
    failed = sum(" FAILED" in line or " ERROR" in line for line in lines)
    summary = next((line for line in reversed(lines) if line.startswith("=") and any(word in line for word in words)),
                   f"incomplete (returncode {tests['returncode']}): {passed} passed, {failed} failed before it stopped")
    tests["summary"] = summary.strip("= ")
    tests["tail"] = "\n".join(lines[-60:])
    tests["failures"] = [line for line in lines if " FAILED" in line or line.startswith(("FAILED", "ERROR"))][:30]
    print(tests["tail"], flush=True)
    log(f"part 1 done: {tests['summary']}")
    save()


# ----------------------------------------------------------------------------- timing helpers


def median_time(fn, sync, min_reps=3, max_reps=30, target=0.6):
    """Median seconds of ``fn()`` (synchronised), after two warm-up calls (compilation)."""
    fn()
    fn()
    sync()
    times = []
    total = 0.0
    while len(times) < max_reps and (len(times) < min_reps or total < target):
        begin = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - begin)
        total += times[-1]
    return statistics.median(times)


def numba_sync():
    from numba import cuda

    cuda.synchronize()


# ----------------------------------------------------------------------------- part 2: training step


def torch_layer(cell, size, dtype):
    import torch

    _, _, features, hidden = size
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(features, hidden)
    return module.to(device="cuda", dtype=dtype)


def numrnn_layer(cell, size, torch_module=None):
    import numpy as np

    import numrnn

    _, _, features, hidden = size
    cls = numrnn.LSTM if cell == "lstm" else numrnn.GRU
    layer = cls(features, hidden, dtype=np.float32, backend="cuda", seed=0)
    if torch_module is not None:
        layer.load_state_dict({k: v.detach().cpu().numpy() for k, v in torch_module.state_dict().items()})
    return layer


def set_device_output(layer, value):
    """Ask the layer for device arrays back, where this numrnn version supports it."""
    if hasattr(layer, "device_output"):
        layer.device_output = value
        return True
    return False


def training_row(cell, size):
    import numpy as np

    steps, batch, features, hidden = size
    row = {"cell": cell, "T": steps, "B": batch, "I": features, "H": hidden}
    report["training"].append(row)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, batch, features)).astype(np.float32)
    dy = rng.normal(size=(steps, batch, hidden)).astype(np.float32)
    module = None
    try:
        import torch

        if torch.cuda.is_available():
            module = torch_layer(cell, size, torch.float32)
            x_t = torch.from_numpy(x).cuda()
            dy_t = torch.from_numpy(dy).cuda()

            def torch_step():
                y, _ = module(x_t)
                y.backward(dy_t)

            row["torch"] = median_time(torch_step, torch.cuda.synchronize)
            with torch.no_grad():
                row["_torch_y"] = module(x_t)[0].cpu().numpy()
    except Exception as exc:
        row["note"] = error(f"torch {cell} {size}", exc)[:80]
    try:
        if report["environment"].get("numrnn cuda") == "unavailable":
            raise RuntimeError("skipped")
        layer = numrnn_layer(cell, size, module)

        def host_step():
            y, _ = layer(x)
            layer.backward(dy)

        row["numrnn_host"] = median_time(host_step, numba_sync)
        y_host, _ = layer(x)
        expected = row.pop("_torch_y", None)
        if expected is not None:
            row["max_rel_diff"] = float(np.max(np.abs(y_host - expected)) / max(np.max(np.abs(expected)), 1e-30))
        if set_device_output(layer, True):
            from numba import cuda

            if hasattr(type(layer), "device_params"):  # weights and gradients stay on the GPU too
                layer.device_params = True
            x_d, dy_d = cuda.to_device(x), cuda.to_device(dy)

            def device_step():
                y, _ = layer(x_d)
                layer.backward(dy_d)

            row["numrnn_device"] = median_time(device_step, numba_sync)
    except Exception as exc:
        if str(exc) != "skipped":
            row["note"] = (row.get("note", "") + " " + error(f"numrnn {cell} {size}", exc)[:80]).strip()
    row.pop("_torch_y", None)
    log(f"{cell} {size}: numrnn device {fmt_ms(row.get('numrnn_device'))} ms, "
        f"numrnn NumPy {fmt_ms(row.get('numrnn_host'))} ms, torch {fmt_ms(row.get('torch'))} ms")
    save()


# ----------------------------------------------------------------------------- part 3: step latency


def step_row(cell):
    import numpy as np

    import numrnn

    batch, features, hidden = STEP_SIZE
    row = {"cell": cell}
    report["step"].append(row)
    rng = np.random.default_rng(1)
    x_t = rng.normal(size=(batch, features)).astype(np.float32)
    cls = numrnn.LSTM if cell == "lstm" else numrnn.GRU
    for backend in ("cuda", "cpu"):
        if backend == "cuda" and report["environment"].get("numrnn cuda") == "unavailable":
            continue
        if backend == "cpu" and remaining() < 20:  # compiling the CPU step kernels takes a while
            row["note"] = (row.get("note", "") + " cpu skipped: time budget").strip()
            continue
        try:
            layer = cls(features, hidden, dtype=np.float32, backend=backend, seed=0)
            state = [None]

            def one_step():
                _, state[0] = layer.step(x_t, state[0])

            row[f"numrnn_{backend}"] = median_time(one_step, numba_sync if backend == "cuda" else (lambda: None),
                                                   min_reps=20, max_reps=400, target=0.4)
        except Exception as exc:
            row["note"] = (row.get("note", "") + " " + error(f"numrnn step {backend} {cell}", exc)[:60]).strip()
    try:
        import torch

        if torch.cuda.is_available():
            module = torch_layer(cell, (1, batch, features, hidden), torch.float32)
            xt = torch.from_numpy(x_t).cuda()[None]
            state = [None]

            @torch.no_grad()
            def torch_step():
                out, state[0] = module(xt, state[0])
                torch.cuda.synchronize()

            row["torch"] = median_time(torch_step, torch.cuda.synchronize, min_reps=20, max_reps=400, target=0.4)
    except Exception as exc:
        row["note"] = (row.get("note", "") + " " + error(f"torch step {cell}", exc)[:60]).strip()
    log(f"step {cell}: numrnn cuda {fmt_ms(row.get('numrnn_cuda'))} ms, cpu {fmt_ms(row.get('numrnn_cpu'))} ms, "
        f"torch {fmt_ms(row.get('torch'))} ms")
    save()


# ----------------------------------------------------------------------------- main


def main(argv):
    global SIZES, STEP_SIZE
    if "--tiny" in argv:
        SIZES = [(3, 2, 2, 3), (2, 3, 1, 2)]
        STEP_SIZE = (1, 2, 3)
    environment()
    log("environment: " + json.dumps(report["environment"], default=str))
    if "--skip-tests" not in argv:
        try:
            run_tests()
        except Exception as exc:
            error("tests", exc)
    try:
        import numrnn

        numrnn.get_backend("cuda")
    except Exception as exc:
        error("numrnn backend=\"cuda\" is unusable, numrnn timings skipped", exc)
        report["environment"]["numrnn cuda"] = "unavailable"
    for cell in ("lstm", "gru"):
        for size in SIZES:
            if remaining() < 25:
                report["training"].append({"cell": cell, "T": size[0], "B": size[1], "I": size[2], "H": size[3],
                                           "note": "skipped: time budget"})
                continue
            training_row(cell, size)
    for cell in ("lstm", "gru"):
        if remaining() < 8:
            report["step"].append({"cell": cell, "note": "skipped: time budget"})
            continue
        step_row(cell)
    report["environment"]["total seconds"] = round(elapsed(), 1)
    save()
    print()
    print(markdown(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
