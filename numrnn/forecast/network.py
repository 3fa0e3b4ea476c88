"""The forecasters' network: a recurrent encoder whose last hidden state feeds a linear head.

:class:`EncoderHead` holds the two modules as children of an :class:`numrnn.nn.Module` (which
derives the parameters, gradients, train/eval, zero_grad and state_dict from them); :class:`WindowNet` (:class:`numrnn.forecast.Forecaster`, fixed-length
windows with covariates) and :class:`PaddedNet` (:class:`numrnn.forecast.GlobalForecaster`,
right-padded windows with ``lengths``) differ only in how they read a batch.
"""

from __future__ import annotations

import numpy as np

from numrnn import nn
from numrnn.cells import cell_family

__all__ = ["CELLS", "EncoderHead", "PaddedNet", "WindowNet", "encoder_head_specs"]

#: The forecasters' ``cell`` choices: the lower-case names of the recurrent layers.
CELLS = ("lstm", "gru", "rnn")


def encoder_head_specs(cell, input_size, hidden_size, num_layers, head_inputs, head_outputs, dtype, n_series=0):
    """The :func:`numrnn.nn.module_spec` descriptions (less backend and seed) of an encoder and head.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}
        The forecasters' cell name; the layer type is its upper-case form.
    input_size, hidden_size, num_layers : int
        The recurrent layer's configuration.
    head_inputs : int
        Inputs of the head besides the encoder's last hidden state.
    head_outputs : int
        Outputs of the head.
    dtype : dtype-like
    n_series : int, default 0
        With ``n_series > 0``, also a per-series table ``series``: an
        :class:`numrnn.nn.Embedding` (n_series, head_outputs) whose row of each window's series
        is added to the head's outputs (:class:`PaddedNet`).

    Returns
    -------
    dict
        ``{"rnn": spec, "head": spec}`` (and ``"series": spec``); networks are built from it and
        loaders check a file's arrays against it (``numrnn.io._check_module``) before building
        anything.
    """
    dtype = np.dtype(dtype).name
    specs = {
        "rnn": {
            "type": cell.upper(),
            "config": {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers,
                       "bias": True, "bidirectional": False, "dtype": dtype},
        },
        "head": {
            "type": "Linear",
            "config": {"in_features": hidden_size + head_inputs, "out_features": head_outputs,
                       "bias": True, "dtype": dtype},
        },
    }
    if n_series:
        specs["series"] = {"type": "Embedding",
                           "config": {"num_embeddings": n_series, "embedding_dim": head_outputs, "padding_idx": None,
                                      "dtype": dtype}}
    return specs


class EncoderHead(nn.Module):
    """A recurrent layer ``rnn`` and a :class:`numrnn.nn.Linear` ``head``, built from their specs.

    Parameters
    ----------
    specs : dict
        As :func:`encoder_head_specs` returns.
    backend : {"auto", "cpu", "cuda"}
        Where the recurrent kernels run.
    seeds : tuple of int
        Seeds of the recurrent layer's and the head's initial weights.
    """

    def __init__(self, specs, backend, seeds):
        super().__init__()
        rnn, head = specs["rnn"], specs["head"]
        # children: params, grads, train/eval, zero_grad and state_dict come from nn.Module, under
        # the names "rnn.<name>" and "head.<name>" (the keys saved files hold)
        self.rnn = nn.module_from_spec({**rnn, "config": {**rnn["config"], "backend": backend, "seed": seeds[0]}})
        self.head = nn.module_from_spec({**head, "config": {**head["config"], "seed": seeds[1]}})
        if "series" in specs:  # starts at zero: an untrained table adds nothing to the shared model
            self.series = nn.module_from_spec({**specs["series"], "config": {**specs["series"]["config"], "seed": 0}})
            self.series.params["weight"][...] = 0


class WindowNet(EncoderHead):
    """Encoder + MIMO head over fixed-length windows with covariates (:class:`Forecaster`).

    ``forward(x)``: x (lookback + horizon, B, k + m), time-major: the first ``lookback`` steps
    are the history (targets and covariates); for the last ``horizon`` steps only the covariate
    columns are read, flattened, and fed to the head next to the encoder's last hidden state.
    Returns (B, head outputs).
    """

    def __init__(self, specs, lookback, n_targets, n_exog, backend, seeds):
        super().__init__(specs, backend, seeds)
        self.lookback, self.n_targets, self.n_exog = lookback, n_targets, n_exog

    def forward(self, x):
        y, _ = self.rnn(x[: self.lookback])
        last = y[-1]
        if self.n_exog:
            future = x[self.lookback :, :, self.n_targets :]  # (horizon, B, m)
            future = future.transpose(1, 0, 2).reshape(last.shape[0], -1)
            last = np.concatenate([last, future], axis=1)
        return self.head(last)

    def backward(self, dy):
        d_last = self.head.backward(dy)
        hidden = self.rnn.hidden_size
        dy_seq = np.zeros((self.lookback, d_last.shape[0], hidden), dtype=d_last.dtype)
        dy_seq[-1] = d_last[:, :hidden]
        self.rnn.backward(dy_seq)
        return None  # the input gradient is not needed


class PaddedNet(EncoderHead):
    r"""Encoder over right-padded windows (``lengths``) + linear Gaussian head (:class:`GlobalForecaster`).

    ``forward(x, lengths, future, ids=None)``: x (lookback, B, F), lengths (B,), future (B, P) ->
    (B, 2 * horizon): the horizon means followed by the horizon log-variances.  With a
    ``series`` table (specs from :func:`encoder_head_specs` with ``n_series``), ``ids`` (B,) are
    the windows' series (rows of the table) and the output is

    .. math::  W [h_n; f] + b + E_{\text{id}},

    a learned offset of every mean and log-variance per series; ``id = -1`` (a series the table
    has no row for) takes the mean row :math:`\bar E` (the offset of an average training series;
    such windows give the table no gradient: they are an inference rule, never trained on).
    The kernels run on the CPU.
    """

    def __init__(self, specs, seeds):
        super().__init__(specs, "cpu", seeds)
        self.n_states = cell_family(self.rnn.cell).state_size
        self.has_series = "series" in specs

    def forward(self, x, lengths, future, ids=None):
        y, state = self.rnn(x, lengths=lengths)
        h_n = state[0] if self.n_states > 1 else state  # (L, B, H)
        last = h_n[-1]
        self._shape = (y.shape, h_n.shape)
        if future.shape[1]:
            last = np.concatenate([last, future], axis=1)
        out = self.head(last)
        if self.has_series:
            if ids is None:
                raise ValueError("this network has a per-series table: pass ids, the windows' series")
            ids = np.asarray(ids, dtype=np.int64)
            self._known = ids >= 0
            offset = self.series(np.where(self._known, ids, 0))
            if not self._known.all():
                offset[~self._known] = self.series.params["weight"].mean(axis=0)
            out = out + offset
        return out

    def backward(self, dy):
        if self.has_series:
            self.series.backward(np.where(self._known[:, None], dy, 0).astype(dy.dtype, copy=False))
        d_last = self.head.backward(dy)
        y_shape, h_shape = self._shape
        dh = np.zeros(h_shape, dtype=d_last.dtype)
        dh[-1] = d_last[:, : h_shape[2]]
        d_state = (dh,) + (None,) * (self.n_states - 1) if self.n_states > 1 else dh
        self.rnn.backward(np.zeros(y_shape, dtype=d_last.dtype), d_state)
