"""Shared pieces of the numrnn asv benchmarks: sizes, backends, the cuda guard.

Every benchmark class is parametrised over ``backend`` in ``BACKENDS``; a ``cuda``
case raises ``NotImplementedError`` in ``setup`` (asv reports it as skipped, not
failed) where the cuda backend or a usable GPU is missing.
"""

import os

import numpy as np

# The benchmarks time the compiled kernels: on first use they compile in the benchmark's own
# process (setup), not in a background process while NumPy kernels answer.
os.environ.setdefault("NUMRNN_FIRST_USE", "compile")

#: Named problem sizes, (T, B, I, H): time steps, batch, input features, hidden units.
SIZES = {
    "small": (64, 32, 1, 32),
    "medium": (100, 64, 16, 128),
    "large": (50, 128, 256, 512),
}


def _sizes_from_environment():
    """Sizes in ``params``: ``small,medium`` unless ``NUMRNN_BENCH_SIZES`` names others.

    ``large`` is left out by default: it alone takes minutes per method.  Run it with
    e.g. ``NUMRNN_BENCH_SIZES=large asv run --python=same --bench LayerSuite``.
    """
    names = [name.strip() for name in os.environ.get("NUMRNN_BENCH_SIZES", "small,medium").split(",") if name.strip()]
    unknown = [name for name in names if name not in SIZES]
    if unknown or not names:
        raise ValueError(f"NUMRNN_BENCH_SIZES must name some of {sorted(SIZES)}, got {names}")
    return names


DEFAULT_SIZES = _sizes_from_environment()

CELLS = ["rnn", "lstm", "gru"]

BACKENDS = ["cpu", "cuda"]

DTYPE = np.float32


def require_backend(backend):
    """Raise ``NotImplementedError`` (asv: skip) when ``backend`` cannot run here."""
    if backend == "cpu":
        return
    import numrnn.backends

    try:
        import numrnn.backends.cuda  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(f"numrnn has no cuda backend in this build: {exc}") from exc
    if not numrnn.backends.cuda_available():
        raise NotImplementedError("no usable CUDA GPU (numrnn.backends.cuda_available() is False)")


def synchronize(backend):
    """Wait for queued GPU work so a ``time_*`` method measures it (no-op on cpu)."""
    if backend == "cuda":
        from numba import cuda

        cuda.synchronize()


def make_layer(cell, input_size, hidden_size, backend):
    """A seeded float32 ``numrnn.RNN`` / ``LSTM`` / ``GRU`` on ``backend``."""
    import numrnn

    classes = {"rnn": numrnn.RNN, "lstm": numrnn.LSTM, "gru": numrnn.GRU}
    return classes[cell](input_size, hidden_size, dtype=DTYPE, backend=backend, seed=0)


def random_array(shape, seed=0):
    """Standard normal float32 array of ``shape``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(DTYPE)
