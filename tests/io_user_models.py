"""Module classes of a user's own, importable by class path, for the ``io.save``/``io.load`` tests.

Defined at the top level of this importable module (``tests/`` is on ``sys.path``, see
``conftest.py``), as ``numrnn.io`` requires.  :class:`NotAModule` records every call, so a test can
tell that a crafted file naming it was refused without calling it.
"""

from __future__ import annotations

import numpy as np

import numrnn
from numrnn import nn

#: Every construction of :class:`NotAModule` (a crafted file must never cause one).
CALLS = []


class Tagger(nn.Module):
    """Embedding -> LSTM -> Linear: integer tokens (T, B) to logits (T, B, vocab)."""

    def __init__(self, vocab, hidden, seed=0, dtype="float32"):
        super().__init__()
        self.vocab, self.hidden, self.seed, self.dtype_name = vocab, hidden, seed, dtype
        self.embed = nn.Embedding(vocab, hidden, dtype=np.dtype(dtype), seed=seed)
        self.rnn = numrnn.LSTM(hidden, hidden, dtype=np.dtype(dtype), seed=seed + 1)
        self.head = nn.Linear(hidden, vocab, dtype=np.dtype(dtype), seed=seed + 2)

    def forward(self, tokens):
        y, _ = self.rnn(self.embed(tokens))
        return self.head(y)

    def backward(self, dy):
        dx, _ = self.rnn.backward(self.head.backward(dy))
        return self.embed.backward(dx)

    def config(self):
        return {"vocab": self.vocab, "hidden": self.hidden, "seed": self.seed, "dtype": self.dtype_name}


class Stacked(nn.Module):
    """A module of the user's own holding another (:class:`Tagger`), a Sequential and a parameter of its own."""

    def __init__(self, vocab, hidden, out, seed=0):
        super().__init__()
        self.vocab, self.hidden, self.out, self.seed = vocab, hidden, out, seed
        self.params = {"scale": np.full(vocab, 0.5, np.float32)}
        self.grads = {"scale": np.zeros(vocab, np.float32)}
        self.tagger = Tagger(vocab, hidden, seed=seed)
        self.post = nn.Sequential(nn.Tanh(), nn.Linear(vocab, out, seed=seed + 3))

    def forward(self, tokens):
        return self.post(self.tagger(tokens) * self.params["scale"])

    def backward(self, dy):
        raise NotImplementedError("not needed by the tests")

    def config(self):
        return {"vocab": self.vocab, "hidden": self.hidden, "out": self.out, "seed": self.seed}


class NoConfig(nn.Module):
    """Lacks config(): cannot be saved."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2, seed=0)

    def forward(self, x):
        return self.head(x)

    def backward(self, dy):
        return self.head.backward(dy)


class ArrayConfig(NoConfig):
    """config() holds a NumPy array: not JSON."""

    def config(self):
        return {"weights": np.zeros(2)}


class ExtraConfig(NoConfig):
    """config() names an argument the constructor does not take."""

    def config(self):
        return {"bogus": 1}


class ForgetfulConfig(nn.Module):
    """config() leaves out the width, so ``ForgetfulConfig(**config())`` builds other shapes."""

    def __init__(self, width=2):
        super().__init__()
        self.head = nn.Linear(width, width, seed=0)

    def forward(self, x):
        return self.head(x)

    def backward(self, dy):
        return self.head.backward(dy)

    def config(self):
        return {}


class Outer:
    class Inner(NoConfig):
        """A class inside a class: not a top-level name."""

        def config(self):
            return {}


class NotAModule:
    """Not a Module: a file naming it must be refused before it is called."""

    def __init__(self, *args, **kwargs):
        CALLS.append((args, kwargs))
