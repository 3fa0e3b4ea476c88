"""Seeded inverted dropout, active in training mode only: :class:`Dropout`."""

from __future__ import annotations

import numpy as np

from numrnn import _validation as check
from numrnn.nn._checks import _as_float, _check_real, _float_input, _fresh
from numrnn.nn.module import USED, Module

__all__ = ["Dropout"]

class Dropout(Module):
    r"""Inverted dropout (as ``torch.nn.Dropout``): in training mode each entry is zeroed with
    probability ``p`` and the others are scaled by :math:`1/(1-p)`; in evaluation mode it is the
    identity.

    :math:`y = x \odot m / (1 - p)` with :math:`m_k \sim \mathrm{Bernoulli}(1 - p)`, so
    :math:`E[y] = x`; the backward is :math:`dx = dy \odot m / (1 - p)` with the mask of the
    forward.  ``p = 1`` zeroes everything (and every gradient).

    Parameters
    ----------
    p : float in [0, 1], default 0.5
        Probability of zeroing an entry.
    seed : int or None
        Seed of the masks; None draws one (:func:`numrnn._validation.check_seed`), kept in
        :attr:`seed` and :meth:`config`.  A module rebuilt from its config draws the same
        sequence of masks as a new module with that seed.

    Notes
    -----
    Input of any shape; float32 and float64 keep their dtype, other numbers become float64.
    Each training-mode forward draws a new mask; a failed :class:`Sequential` call puts the
    generator back, so the masks that follow are those of a run without the failure.
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = _check_real(p, "p", lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")
        self.seed = check.check_seed(seed, "seed")
        self._rng = np.random.default_rng(self.seed)

    def forward(self, x):
        """Apply dropout (training mode) or pass ``x`` on (evaluation mode, or ``p = 0``).

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, the shape of ``x``
        """
        arr = _float_input(x, "x")
        if not self.training or self.p == 0.0:
            self._save_for_backward((None, arr.shape, arr.dtype))
            return _fresh(arr, x)
        keep = 1.0 - self.p
        draws = self._rng.random(arr.shape)  # drawn for p = 1 too: the stream does not depend on p
        if keep == 0.0:
            mask = np.zeros(arr.shape, dtype=arr.dtype)
        else:
            mask = (draws < keep).astype(arr.dtype) / arr.dtype.type(keep)
        self._save_for_backward((mask, arr.shape, arr.dtype))
        return np.asarray(arr * mask)  # asarray: NumPy makes a scalar of a 0-d product

    def backward(self, dy):
        """Gradient of ``sum(y * dy)``: ``dy`` times the last forward's scaled mask.

        Parameters
        ----------
        dy : array_like, the shape of the last output

        Returns
        -------
        dx : ndarray, the shape of the last input
        """
        mask, shape, dtype = self._take_saved()
        grad = _as_float(dy, "dy", dtype)
        check.check_shape(grad, shape, "dy")
        dx = _fresh(grad, dy) if mask is None else np.asarray(grad * mask)
        self._saved = USED
        return dx

    def config(self):
        return {"p": self.p, "seed": self.seed}
