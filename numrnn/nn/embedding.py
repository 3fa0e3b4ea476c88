"""A lookup table of vectors indexed by integers: :class:`Embedding` (as ``torch.nn.Embedding``)."""

from __future__ import annotations

import numbers

import numpy as np

from numrnn import _validation as check
from numrnn.backends.cpu.nn import embedding_scatter_add
from numrnn.nn.module import USED, Module

__all__ = ["Embedding"]

class Embedding(Module):
    r"""A lookup table of ``num_embeddings`` vectors, indexed by integers (as ``torch.nn.Embedding``).

    :math:`y[\ldots, :] = W[x[\ldots], :]`: integer indices of any shape ``S`` give vectors of
    shape ``S + (embedding_dim,)``.  The gradient of the table is a scatter-add,
    :math:`\partial L / \partial W_r = \sum_{k : x_k = r} \partial L / \partial y_k`: repeated indices
    accumulate, and the row ``padding_idx`` receives none.

    Parameters
    ----------
    num_embeddings : int
        Size of the vocabulary: indices lie in ``[0, num_embeddings)``.
    embedding_dim : int
        Length of each vector.
    padding_idx : int or None, default None
        A row initialised to zero that receives no gradient (so it stays zero under training
        unless set otherwise).  Negative values count from the end, as in PyTorch, and are stored
        as ``num_embeddings + padding_idx``.
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of the table and of the output.
    seed : int or None
        Seed for the initial table, N(0, 1) as in PyTorch; None draws one
        (:func:`numrnn._validation.check_seed`), kept in :attr:`seed` and :meth:`config`.

    Attributes
    ----------
    params : dict
        ``weight`` (num_embeddings, embedding_dim).
    grads : dict
        Same key; :meth:`backward` accumulates into it.
    seed : int
        The seed of the current table.

    Notes
    -----
    The backward is a serial Numba kernel (:func:`numrnn.backends.cpu_nn.embedding_scatter_add`):
    the rows hitting one index are summed in float64 in their input order, so the gradient has
    the same bits for any thread count.  Indices carry no gradient: :meth:`backward` returns None.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, seed=None):
        super().__init__()
        self.num_embeddings = check.check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = check.check_positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(
                    f"padding_idx must be an integer or None, got {padding_idx!r} of type {type(padding_idx).__name__}"
                )
            n = self.num_embeddings
            if not -n <= int(padding_idx) < n:
                raise ValueError(f"padding_idx must lie in [{-n}, {n}) (num_embeddings {n}), got {padding_idx}")
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        self.dtype = check.check_dtype(dtype)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw a new table from N(0, 1) (row ``padding_idx`` zero) and zero the gradient.

        ``seed`` (None draws one) becomes :attr:`seed`, so :meth:`config` rebuilds this table.
        """
        seed = check.check_seed(seed, "seed")
        weight = np.random.default_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        weight = weight.astype(self.dtype)
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0
        self.params = {"weight": weight}
        self.grads = {"weight": np.zeros_like(weight)}
        self.seed = seed
        self._saved = None

    def _indices(self, x):
        if isinstance(x, np.ma.MaskedArray):
            raise TypeError("x is a masked array, and Embedding would ignore its mask: pass np.ma.filled(x, index)")
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"x could not be converted to an array: {exc}") from exc
        if arr.dtype.kind not in "iu":
            raise TypeError(f"x must hold integer indices, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_embeddings):
            raise ValueError(
                f"x must hold indices in [0, {self.num_embeddings}) (num_embeddings), "
                f"got min {arr.min()}, max {arr.max()}"
            )
        return arr.astype(np.int64)  # a copy: the caller may change theirs before backward reads it

    def forward(self, x):
        """Look the indices up.

        Parameters
        ----------
        x : array_like of int, any shape S
            Indices in ``[0, num_embeddings)``.

        Returns
        -------
        ndarray, shape S + (embedding_dim,)
        """
        idx = self._indices(x)
        y = self.params["weight"][idx]
        self._save_for_backward((idx.reshape(-1), idx.shape))
        return y

    def backward(self, dy):
        """Scatter-add ``dy`` into ``grads["weight"]`` (rows of ``padding_idx`` skipped).

        Parameters
        ----------
        dy : array_like, shape S + (embedding_dim,), the shape of the last output

        Returns
        -------
        None
            Integer indices have no gradient (as in PyTorch).
        """
        idx, shape = self._take_saved()
        dy = check.as_float_array(dy, "dy", self.dtype)
        check.check_shape(dy, shape + (self.embedding_dim,), "dy")
        order = np.argsort(idx, kind="stable")
        padding = -1 if self.padding_idx is None else self.padding_idx
        embedding_scatter_add(self.grads["weight"], idx, order, dy.reshape(-1, self.embedding_dim), padding)
        self._saved = USED
        return None

    def config(self):
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }
