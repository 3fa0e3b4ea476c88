"""The products over all ``T*B`` rows (numrnn/backends/cpu/linalg.py) and Numba's cache."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from numrnn.backends.cpu import linalg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PARALLEL_PRODUCT_ALONE = textwrap.dedent(
    """
    import numpy as np
    from numrnn.backends.cpu import linalg
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((128, 8)).astype(np.float32), rng.standard_normal((8, 256)).astype(np.float32)
    out = np.empty((128, 256), np.float32)
    linalg.matmul_rows(a, b, out, np.ones(256, np.float32))
    """
)

PROJECTION = textwrap.dedent(
    """
    import numpy as np
    from numrnn.backends.cpu import linalg
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 64, 8)).astype(np.float32), rng.standard_normal((256, 8)).astype(np.float32)
    out = np.empty((2, 64, 256), np.float32)
    linalg.project_inputs(x, w, np.ones(256, np.float32), out)
    assert np.allclose(out, x @ w.T + 1, atol=1e-4)
    print("projected")
    """
)


def test_projection_loads_from_a_cache_filled_piecewise(tmp_path):
    """A kernel compiled while the parallel kernel it calls came from the cache crashed
    (SIGSEGV) when later loaded from the cache: the parallel product cached alone in one
    process, the input projection run in a second, then in a third.  The projection is
    Python now, calling the parallel kernel directly."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for number, script in enumerate([PARALLEL_PRODUCT_ALONE, PROJECTION, PROJECTION]):
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"process {number + 1} exited {result.returncode}:\n{result.stderr[-3000:]}"
        assert number == 0 or "projected" in result.stdout


def test_projection_and_input_gradient_match_numpy(rng):
    x = rng.standard_normal((3, 70, 5))  # 210 rows: blocks of 64 and a tail
    w = rng.standard_normal((48, 5))
    bias = rng.standard_normal(48)
    out = np.empty((3, 70, 48))
    linalg.project_inputs(x, w, bias, out)
    np.testing.assert_allclose(out, x @ w.T + bias, rtol=0, atol=1e-13)
    d_pre = rng.standard_normal((3, 70, 48))
    np.testing.assert_allclose(linalg.input_gradient(d_pre, w), d_pre @ w, rtol=0, atol=1e-13)
