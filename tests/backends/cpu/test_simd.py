"""Register-tile products (numrnn/backends/cpu/simd.py) against float64 NumPy."""

import itertools

import numpy as np
import pytest

from numrnn.backends import cpu
from numrnn.backends.cpu import simd as cpu_simd

ROWS = (1, 3, 4, 5, 8, 9)
INNER = (0, 1, 7, 33)
COLS = (1, 7, 8, 15, 16, 17, 31, 32, 33, 48, 69)


def tolerance(dtype, inner):
    return (2e-6 if dtype == np.float32 else 1e-14) * max(inner, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_into_matches_numpy_over_tile_edges(dtype):
    rng = np.random.default_rng(0)
    for rows, inner, cols in itertools.product(ROWS, INNER, COLS):
        a = rng.standard_normal((rows, inner)).astype(dtype)
        b = rng.standard_normal((inner, cols)).astype(dtype)
        out = np.full((rows, cols), np.nan, dtype=dtype)  # every entry must be written
        cpu_simd.matmul_into(a, b, out)
        expected = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, inner), err_msg=str((rows, inner, cols)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_into_takes_a_transposed_view_as_a(dtype):
    """The weight gradients pass ``d.T`` (F-ordered) as ``a``."""
    rng = np.random.default_rng(1)
    d = rng.standard_normal((37, 21)).astype(dtype)
    h = rng.standard_normal((37, 40)).astype(dtype)
    out = np.empty((21, 40), dtype=dtype)
    cpu_simd.matmul_into(d.T, h, out)
    np.testing.assert_allclose(out, d.T.astype(np.float64) @ h, rtol=0, atol=tolerance(dtype, 37))


def test_lane_count_is_one_avx512_register():
    assert cpu_simd.Lanes(cpu_simd.types.float32).count == 16
    assert cpu_simd.Lanes(cpu_simd.types.float64).count == 8


@pytest.mark.parametrize(
    "shape",
    [
        (16, 32, 128),  # a per-step product: register tiles
        (3, 5, 4),  # fewer columns than one vector: BLAS
        (200, 300, 40),  # many rows and much work: BLAS
        (8, 8, 70000),  # b larger than the cache bound: BLAS
    ],
)
def test_product_into_either_path_matches_numpy(shape):
    rows, inner, cols = shape
    rng = np.random.default_rng(2)
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    b = rng.standard_normal((inner, cols)).astype(np.float32)
    out = np.empty((rows, cols), dtype=np.float32)
    with cpu.single_threaded_blas():
        cpu.product_into(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=0, atol=tolerance(np.float32, inner))


def test_column_sums():
    a = np.random.default_rng(3).standard_normal((50, 19))
    np.testing.assert_allclose(cpu.column_sums(a), a.sum(axis=0), rtol=1e-13)


def test_single_threaded_blas_restores_the_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with cpu.single_threaded_blas():
        inside = {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
        with cpu.single_threaded_blas():  # nested: nothing to change
            pass
    after = {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert inside and set(inside.values()) == {1}
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    with controller.limit(limits=2):
        with cpu.single_threaded_blas():
            pass
        restored = {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert set(restored.values()) == {2}
    assert after.keys() == inside.keys()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_into_with_bias(dtype):
    rng = np.random.default_rng(4)
    for rows, inner, cols in itertools.product((1, 5, 8), (0, 3, 20), (7, 16, 33, 64)):
        a = rng.standard_normal((rows, inner)).astype(dtype)
        b = rng.standard_normal((inner, cols)).astype(dtype)
        bias = rng.standard_normal(cols).astype(dtype)
        out = np.full((rows, cols), np.nan, dtype=dtype)
        cpu_simd.matmul_into(a, b, out, bias)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b + bias, rtol=0, atol=tolerance(dtype, inner + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_panels_product_matches_numpy(dtype):
    rng = np.random.default_rng(5)
    width = 16 if dtype == np.float32 else 8
    for rows, inner, panels in itertools.product((1, 3, 4, 9), (0, 1, 17), (1, 3)):
        cols = 2 * width * panels
        a = rng.standard_normal((rows, inner)).astype(dtype)
        b = rng.standard_normal((inner, cols)).astype(dtype)
        bias = rng.standard_normal(cols).astype(dtype)
        assert cpu_simd.packs_evenly(b)
        packed = cpu_simd.pack_panels(b)
        assert packed.shape == (panels, inner, 2 * width)
        out = np.full((rows, cols), np.nan, dtype=dtype)
        cpu_simd.matmul_packed_into(a, packed, out)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=0, atol=tolerance(dtype, inner))
        cpu_simd.matmul_packed_into(a, packed, out, bias)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b + bias, rtol=0, atol=tolerance(dtype, inner + 1))
    assert not cpu_simd.packs_evenly(np.zeros((3, 2 * width + 1), dtype=dtype))


@pytest.mark.parametrize("cols", [96, 40, 3])  # whole panels, not whole panels, narrower than a vector
def test_matmul_rows_and_step_product_paths(cols):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((1000, 24)).astype(np.float32)  # 1000 rows: blocks of 64 and a tail
    b = rng.standard_normal((24, cols)).astype(np.float32)
    bias = rng.standard_normal(cols).astype(np.float32)
    out = np.empty((1000, cols), dtype=np.float32)
    with cpu.single_threaded_blas():
        cpu.matmul_rows(a, b, out, bias)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b + bias, rtol=0, atol=tolerance(np.float32, 25))
        step_out = np.empty((7, cols), dtype=np.float32)
        cpu.step_product(a[:7], cpu.step_weights(b), step_out)
    np.testing.assert_allclose(step_out, a[:7].astype(np.float64) @ b, rtol=0, atol=tolerance(np.float32, 24))


def test_lanes_arithmetic_matches_numpy():
    """The operators that let the scalar cell functions compile for lanes."""
    import numba

    from numrnn.backends.cpu.activations import tanh

    @numba.njit
    def apply(a, b, out):
        x = cpu_simd.load_lanes(a, 0)
        y = cpu_simd.load_lanes(b, 0)
        results = (x + y, x - y, x * y, x / y, -x, min(x, y), max(x, y), np.float32(2) * x + np.float32(1), tanh(x))
        for row, value in enumerate(results):
            cpu_simd.store_lanes(out[row], 0, value)

    rng = np.random.default_rng(7)
    a = rng.standard_normal(16).astype(np.float32) * 3
    b = rng.uniform(0.5, 2.0, 16).astype(np.float32) * np.sign(rng.standard_normal(16)).astype(np.float32)
    out = np.empty((9, 16), dtype=np.float32)
    apply(a, b, out)
    expected = [a + b, a - b, a * b, a / b, -a, np.minimum(a, b), np.maximum(a, b), 2 * a + 1]
    for row, value in enumerate(expected):
        np.testing.assert_allclose(out[row], value, rtol=1e-6, err_msg=str(row))
    np.testing.assert_allclose(out[8], np.tanh(a.astype(np.float64)), rtol=0, atol=1e-6)


def test_lanes_reject_non_contiguous_rows():
    import numba

    @numba.njit
    def load(row):
        return cpu_simd.load_lanes(row, 0)

    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        load(np.zeros(32, dtype=np.float32)[::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matvec_into_matches_numpy(dtype):
    """Dot-form products of the streaming step: rows in lane groups and left over,
    inner sizes below, at and past one vector, ``v`` a row view."""
    rng = np.random.default_rng(5)
    for rows, inner in itertools.product((1, 7, 8, 15, 16, 17, 33, 64), (1, 3, 7, 8, 15, 16, 17, 40, 64)):
        m = rng.standard_normal((rows, inner)).astype(dtype)
        v = rng.standard_normal((2, inner)).astype(dtype)[1]
        out = np.full(rows, np.nan, dtype=dtype)
        cpu_simd.matvec_into(m, v, out)
        expected = m.astype(np.float64) @ v.astype(np.float64)
        np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, inner), err_msg=str((rows, inner)))
