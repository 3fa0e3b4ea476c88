#!/usr/bin/env python
r"""What a first use of numrnn compiles, and what it costs: a cold-start report.

Usage (from the repository root, with numrnn importable)::

    python asv_benchmarks/compile_report.py                 # LSTM + GRU fwd/bwd, and torch
    python asv_benchmarks/compile_report.py --forecast      # also Forecaster(horizon=12).fit(airline)
    python asv_benchmarks/compile_report.py --warmup-first  # check that numrnn.warmup() covers it
    python asv_benchmarks/compile_report.py --top 30 --json report.json

Each workload runs in a fresh Python process whose ``NUMBA_CACHE_DIR`` is a new, empty
temporary directory, so every kernel it needs is compiled (nothing is loaded from the
cache under ``numrnn/``'s ``__pycache__`` or anywhere else).  Expect one to two minutes
per numrnn workload on a 2-core machine.

What is measured
----------------
Compile time per dispatcher
    A listener on Numba's ``"numba:compile"`` event (:mod:`numba.core.event`), which
    Numba fires around each *compilation* of one specialisation (argument types) of a
    dispatcher: not for a load from the on-disk cache, nor for a call that finds a
    compiled overload.  Compiling a kernel compiles the ``@njit`` functions it calls
    (nested events), so each dispatcher gets an *inclusive* time (its whole event) and
    a *self* time (minus the nested compilations in it); the self times add up to the
    total compile time.  ``specs`` counts the specialisations compiled.
CPU seconds
    ``resource.getrusage(RUSAGE_SELF)`` user + system time of the child process (all
    its threads): from the process start to the end of ``import numrnn`` (interpreter
    start-up, NumPy and Numba included), then the first and the second run of the
    workload.  The same for ``import torch`` and the same forward + backward with
    ``torch.nn.LSTM`` / ``torch.nn.GRU``, in a fresh process too.

Workloads
---------
``layers``
    float32 ``numrnn.LSTM(8, 64)`` and ``numrnn.GRU(8, 64)``: forward on (T, B, I) =
    (100, 16, 8) and backward of ``dy = 1``, one after the other.
``torch``
    The same with ``torch.nn.LSTM(8, 64)`` / ``torch.nn.GRU(8, 64)`` (``y.sum().backward()``).
``forecast``
    The default ``numrnn.forecast.Forecaster(horizon=12).fit(load_airline(), progress=False)``.
``--warmup-first``
    ``numrnn.warmup.warmup(cells=("lstm", "gru"), dtypes=("float32",))`` in a fresh cache,
    then ``layers`` and ``forecast`` in a new process on that cache: the report then shows
    what the warm-up missed (nothing, if it covers a typical run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------------------- child side


def _cpu_seconds():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _install_recorder():
    """Register a ``numba:compile`` listener; returns the dict it fills:
    ``{dispatcher name: {"specs": n, "inclusive": s, "self": s, "signatures": [...]}}``
    (``signatures``: the argument types of each specialisation, as Numba prints them)."""
    import time

    from numba.core import event

    table = {}
    stack = []  # [name, start, time spent in nested compilations]

    def name_of(dispatcher):
        func = getattr(dispatcher, "py_func", None)
        if func is None:
            return type(dispatcher).__name__
        return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func.__name__)}"

    class Recorder(event.Listener):
        def on_start(self, ev):
            args = ev.data.get("args") or ()
            stack.append([name_of(ev.data["dispatcher"]), time.perf_counter(), 0.0, f"({', '.join(map(str, args))})"])

        def on_end(self, ev):
            name, start, nested, signature = stack.pop()
            spent = time.perf_counter() - start
            row = table.setdefault(name, {"specs": 0, "inclusive": 0.0, "self": 0.0, "signatures": []})
            row["specs"] += 1
            row["signatures"].append(signature)
            row["inclusive"] += spent
            row["self"] += spent - nested
            if stack:
                stack[-1][2] += spent

    event.register("numba:compile", Recorder())
    return table


def _numrnn_layers(np, numrnn):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 16, 8)).astype(np.float32)
    for cls in (numrnn.LSTM, numrnn.GRU):
        layer = cls(8, 64, dtype=np.float32, seed=0)
        y, _ = layer(x)
        layer.backward(np.ones_like(y))


def _child(workload):
    import time

    # CPU seconds count from the process start (interpreter start-up included), wall
    # seconds from here; the imports include NumPy's (and Numba's for numrnn).
    wall0, cpu0 = time.perf_counter(), 0.0
    table = {}
    out = {"workload": workload, "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR")}
    if workload == "torch":
        import numpy as np
        import torch

        out["import_cpu_s"], out["import_wall_s"] = _cpu_seconds() - cpu0, time.perf_counter() - wall0
        out["threads"] = torch.get_num_threads()

        def run():
            x = torch.from_numpy(np.random.default_rng(0).standard_normal((100, 16, 8)).astype(np.float32))
            for cls in (torch.nn.LSTM, torch.nn.GRU):
                module = cls(8, 64)
                y, _ = module(x)
                y.sum().backward()

    else:
        table = _install_recorder()  # before numrnn's import: it may compile
        import numpy as np

        import numrnn

        out["import_cpu_s"], out["import_wall_s"] = _cpu_seconds() - cpu0, time.perf_counter() - wall0
        import numba

        out["threads"] = numba.get_num_threads()

        if workload == "layers":
            def run():
                _numrnn_layers(np, numrnn)
        elif workload == "forecast":
            from numrnn.datasets import load_airline
            from numrnn.forecast import Forecaster

            series = load_airline()

            def run():
                Forecaster(horizon=12).fit(series, progress=False)
        elif workload == "warmup":
            from numrnn.warmup import warmup

            def run():
                out["warmup_report"] = {f"{c}/{d}": s for (c, d), s in warmup(cells=("lstm", "gru"), dtypes=("float32",), progress=False).seconds.items()}
        elif workload == "layers+forecast":
            from numrnn.datasets import load_airline
            from numrnn.forecast import Forecaster

            series = load_airline()

            def run():
                _numrnn_layers(np, numrnn)
                Forecaster(horizon=12).fit(series, progress=False)
        else:
            raise SystemExit(f"unknown workload {workload!r}")
        from numrnn.warmup import cache_dir

        out["cache_dir"] = cache_dir()
    for label in ("first", "second"):
        cpu, wall = _cpu_seconds(), time.perf_counter()
        run()
        out[f"{label}_cpu_s"], out[f"{label}_wall_s"] = _cpu_seconds() - cpu, time.perf_counter() - wall
        if workload in ("forecast", "warmup", "layers+forecast"):
            break  # a fit takes seconds: the first one is what matters here
    out["total_cpu_s"], out["total_wall_s"] = _cpu_seconds() - cpu0, time.perf_counter() - wall0
    out["compiles"] = table
    print("COMPILE_REPORT_JSON " + json.dumps(out))


# ---------------------------------------------------------------------------- parent side


def _run_child(workload, cache_dir, fresh=True, first_use="background"):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NUMRNN_FIRST_USE=first_use)
    env.pop("NUMRNN_NO_CACHE", None)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", workload],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the {workload!r} child failed with exit status {proc.returncode}")
    for line in proc.stdout.splitlines():
        if line.startswith("COMPILE_REPORT_JSON "):
            result = dict(json.loads(line.split(" ", 1)[1]), fresh=fresh, first_use=first_use)
            if workload != "torch":
                result["background"] = _wait_for_background(result.get("cache_dir"))
            return result
    raise SystemExit(f"the {workload!r} child printed no report:\n{proc.stdout}\n{proc.stderr}")


def _wait_for_background(cache_dir, timeout=900):
    """Wait for the background compiles a "background" child started (their logs are
    ``numrnn-compile-CELL-DTYPE.log`` in the cache), so that the next workload runs on
    a quiet machine; returns ``{"cell dtype": (CPU s, wall s waited)}`` from their logs."""
    import glob
    import re
    import time

    if not cache_dir:
        return {}
    start = time.perf_counter()
    found = {}
    pattern = re.compile(r"background compile of (\w+) (\w+): ([0-9.]+) CPU s")
    while time.perf_counter() - start < timeout:
        logs = glob.glob(os.path.join(cache_dir, "numrnn-compile-*-*.log"))
        for log in logs:
            with open(log) as handle:
                for match in pattern.finditer(handle.read()):
                    found[f"{match.group(1)} {match.group(2)}"] = (float(match.group(3)), time.perf_counter() - start)
        if len(found) == len(logs):
            return found
        time.sleep(0.5)
    raise SystemExit(f"background compiles in {cache_dir} did not finish within {timeout} s")


def _print_table(result, top, signatures=False):
    rows = sorted(result["compiles"].items(), key=lambda item: -item[1]["self"])
    total_self = sum(row["self"] for _, row in rows)
    specs = sum(row["specs"] for _, row in rows)
    cache = "fresh NUMBA_CACHE_DIR" if result["fresh"] else "NUMBA_CACHE_DIR filled by the run above"
    mode = f", NUMRNN_FIRST_USE={result['first_use']}" if result["workload"] != "torch" else ""
    print(f"\n== {result['workload']}: {cache}, {result['threads']} threads{mode} ==")
    if rows:
        width = max(len(name) for name, _ in rows[:top])
        print(f"{'dispatcher':<{width}}  specs  self s  incl s")
        for name, row in rows[:top]:
            print(f"{name:<{width}}  {row['specs']:5d}  {row['self']:6.2f}  {row['inclusive']:6.2f}")
            if signatures and row["specs"] > 1:
                for signature in row.get("signatures", ()):
                    print(f"    {signature}")
        rest = rows[top:]
        if rest:
            print(f"{f'... {len(rest)} more':<{width}}  {sum(r['specs'] for _, r in rest):5d}  "
                  f"{sum(r['self'] for _, r in rest):6.2f}")
    print(f"compiled: {len(rows)} dispatchers, {specs} specialisations, {total_self:.1f} s of compilation")
    print(f"start-up + imports: {result['import_cpu_s']:.2f} CPU s ({result['import_wall_s']:.2f} s wall, imports only)")
    for label in ("first", "second"):
        if f"{label}_cpu_s" in result:
            print(f"{label} run: {result[f'{label}_cpu_s']:.2f} CPU s ({result[f'{label}_wall_s']:.2f} s wall)")
    print(f"process total: {result['total_cpu_s']:.2f} CPU s ({result['total_wall_s']:.2f} s wall)")
    for pair, (cpu, waited) in sorted(result.get("background", {}).items()):
        print(f"background compile of {pair}, another process: {cpu:.2f} CPU s (done {waited:.1f} s after the run)")
    if result.get("cache_dir"):
        print(f"Numba cache of numrnn's CPU kernels: {result['cache_dir']}")
    if result.get("warmup_report"):
        print("warmup seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["warmup_report"].items()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--forecast", action="store_true", help="also time Forecaster(horizon=12).fit(airline)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--warmup-first", action="store_true",
                        help="only check numrnn.warmup(): warm up, then run layers+forecast on that cache")
    parser.add_argument("--top", type=int, default=15, help="dispatchers shown per table (default 15)")
    parser.add_argument("--signatures", action="store_true",
                        help="list the argument types of each specialisation of the dispatchers shown that compiled more than one")
    parser.add_argument("--first-use", choices=("background", "compile"), default="background",
                        help="numrnn's first-use mode in the numrnn workloads (NUMRNN_FIRST_USE): 'background' "
                        "(the default: NumPy kernels answer while another process compiles, which is waited for "
                        "and reported), or 'compile' (compile in the process: the per-dispatcher compile table)")
    parser.add_argument("--json", help="also write every result to this JSON file")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    results = []
    if args.warmup_first:
        with tempfile.TemporaryDirectory(prefix="numrnn-cold-") as cache:
            results.append(_run_child("warmup", cache))
            results.append(_run_child("layers+forecast", cache, fresh=False))
    else:
        with tempfile.TemporaryDirectory(prefix="numrnn-cold-") as cache:
            results.append(_run_child("layers", cache, first_use=args.first_use))
        if args.forecast:
            with tempfile.TemporaryDirectory(prefix="numrnn-cold-") as cache:
                results.append(_run_child("forecast", cache, first_use=args.first_use))
        if not args.no_torch:
            try:
                import importlib.util

                has_torch = importlib.util.find_spec("torch") is not None
            except ImportError:
                has_torch = False
            if has_torch:
                with tempfile.TemporaryDirectory(prefix="numrnn-cold-") as cache:
                    results.append(_run_child("torch", cache))
    for result in results:
        _print_table(result, args.top, args.signatures)
    by_workload = {r["workload"]: r for r in results}
    if "layers" in by_workload and "torch" in by_workload:
        a, b = by_workload["layers"], by_workload["torch"]
        print("\n== first LSTM + GRU forward + backward, fresh process (CPU s) ==")
        print(f"{'':24} {'numrnn':>8} {'torch':>8}")
        print(f"{'start-up + import':24} {a['import_cpu_s']:8.2f} {b['import_cpu_s']:8.2f}")
        print(f"{'first fwd+bwd':24} {a['first_cpu_s']:8.2f} {b['first_cpu_s']:8.2f}")
        print(f"{'start-up+import+first':24} {a['import_cpu_s'] + a['first_cpu_s']:8.2f} {b['import_cpu_s'] + b['first_cpu_s']:8.2f}")
        print(f"{'second fwd+bwd':24} {a['second_cpu_s']:8.3f} {b['second_cpu_s']:8.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
