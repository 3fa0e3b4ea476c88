"""Dense layer: :class:`Linear`, :math:`y = x W^T + b` over the last axis (as ``torch.nn.Linear``)."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from numrnn import _validation as check
from numrnn.backends.cpu.threads import single_threaded_blas
from numrnn.nn.module import USED, Module

__all__ = ["Linear"]

#: GEMMs of fewer multiply-adds than this run on one BLAS thread.  OpenBLAS's workers
#: busy-wait after each multi-threaded call and then hold the cores Numba's threads need for
#: the recurrent kernels next to it: the character LM of ``asv_benchmarks/compare_char_lm.py``
#: (B=8, H=128, a (280, 128) x (128, 40) head) took 13.8 ms a step on two cores, 1.5 ms with
#: its head's GEMMs on one thread.  Larger products keep BLAS's threads.
BLAS_THREADS_MIN_WORK = 2**24


def _gemm_threads(rows, inner, cols):
    """The context a (rows, inner) x (inner, cols) product runs in (see :data:`BLAS_THREADS_MIN_WORK`)."""
    return single_threaded_blas() if rows * inner * cols < BLAS_THREADS_MIN_WORK else contextlib.nullcontext()

class Linear(Module):
    r"""Dense layer over the last axis, :math:`y = x W^T + b` (as ``torch.nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and the output.
    bias : bool, default True
        Whether to add ``bias``.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of parameters and computation; inputs are cast.
    seed : int or None
        Seed for the initial weights, U(-1/sqrt(in), 1/sqrt(in)) for weight and bias; None draws
        one (:func:`numrnn._validation.check_seed`), kept in :attr:`seed` and :meth:`config`.

    Attributes
    ----------
    params : dict
        ``weight`` (out_features, in_features) and ``bias`` (out_features,).
    grads : dict
        Same keys; :meth:`backward` accumulates into them.
    seed : int
        The seed of the current weights.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = check.check_positive_int(in_features, "in_features")
        self.out_features = check.check_positive_int(out_features, "out_features")
        self.bias = check.check_bool(bias, "bias")
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw new weights from U(-1/sqrt(in), 1/sqrt(in)) and zero the gradients.

        ``seed`` (None draws one) becomes :attr:`seed`, so :meth:`config` rebuilds these weights.
        """
        seed = check.check_seed(seed, "seed")
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        params = {"weight": rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype)}
        if self.bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(self.dtype)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self.seed = seed
        self._saved = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : array_like, shape (..., in_features)

        Returns
        -------
        ndarray, shape (..., out_features)
        """
        arr = check.as_float_array(x, "x", self.dtype)
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features (in_features) in its last axis, got shape {arr.shape}")
        if arr is x or not arr.flags.owndata:
            arr = arr.copy()  # not a fresh array: the caller may change theirs before backward reads it
        x2 = arr.reshape(-1, self.in_features)  # 2-D: one GEMM, not NumPy's stacked matmul
        with _gemm_threads(x2.shape[0], self.in_features, self.out_features):
            y = x2 @ self.params["weight"].T
        if self.bias:
            y += self.params["bias"]
        self._save_for_backward((x2, arr.shape))
        return y.reshape(arr.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: returns dx and accumulates ``grads``.

        Parameters
        ----------
        dy : array_like, shape (..., out_features), the shape of the last output

        Returns
        -------
        dx : ndarray, shape (..., in_features), the shape of the last input
        """
        x2, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape[:-1] + (self.out_features,), "dy")
        dy2 = dy.reshape(-1, self.out_features)
        with _gemm_threads(dy2.shape[0], self.in_features, self.out_features):
            self.grads["weight"] += dy2.T @ x2
            dx = dy2 @ self.params["weight"]
        if self.bias:
            self.grads["bias"] += dy2.sum(axis=0, dtype=np.float64)  # float64: the rows are summed one by one
        self._saved = USED
        return dx.reshape(shape)

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }
