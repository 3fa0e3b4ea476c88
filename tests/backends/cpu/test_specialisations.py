"""What a forward + backward compiles: no specialisation for an argument type the
kernels are never called with at run time (the cold-start cost of issue 14).

Run in a fresh process on an empty ``NUMBA_CACHE_DIR``: kernels loaded from the cache
bring their callees' code with them and leave the callees' dispatchers empty, so only
a compilation shows what was compiled.
"""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CHECK = textwrap.dedent(
    """
    import numpy as np
    from numba import types
    import numrnn
    from numrnn.backends.cpu import linalg, simd

    # H = 16 float64: packed panels (4H = 64 columns), the register tiles with and
    # without a bias, and the transposed operand of the weight gradients
    x = np.random.default_rng(0).standard_normal((6, 8, 3))
    layer = numrnn.LSTM(3, 16, dtype=np.float64, seed=0)
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    helpers = (simd.matmul_into, simd.matmul_packed_into, simd._column_tail, linalg.product_into,
               linalg.matmul_rows)
    assert simd.matmul_packed_into.signatures, "nothing was compiled"
    for dispatcher in helpers:
        for signature in dispatcher.signatures:
            odd = [arg for arg in signature if isinstance(arg, (types.Literal, types.Omitted))]
            assert not odd, f"{dispatcher.__name__} compiled for {signature}"
    print("checked")
    """
)


@pytest.mark.slow
def test_forward_backward_compile_no_literal_or_omitted_specialisations(tmp_path):
    """Integer arguments of the product helpers start as ``np.intp(0)`` and the bias is
    passed explicitly: a literal 0 or an omitted bias compiled each of them twice.  (The
    register tiles are one intrinsic, whose literal shape arguments are by design.)"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMRNN_NO_CACHE", None)
    result = subprocess.run([sys.executable, "-c", CHECK], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "checked" in result.stdout, result.stdout + result.stderr
