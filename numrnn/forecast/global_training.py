"""Training of the GlobalForecaster's ensemble: Adam on mini-batches of windows drawn from every series.

Each member draws its windows from its own NumPy generator (seeds spawned from the forecaster's
seed), so the same seed and data give the same weights bit for bit.

:func:`train_members` owns the draws, the epochs, early stopping and the progress bar; what
turns a mini-batch of (series, origin) pairs into one optimiser step is a *trainer*:
:class:`LocalTrainer` here (the windows built and differentiated in this process), or
``numrnn.integrations.dask_training.DaskTrainer`` (the windows held by Dask workers, their
gradients summed in a fixed order).  A trainer has

* ``trainable`` (ndarray of int): the series with at least one training origin, and
  ``n_origins`` (ndarray of int, one per trainable series): their training origins;
* ``has_validation`` (bool) and ``validation_loss(net)`` (float);
* optionally ``validation_outputs(net)``: ``(outputs, target)``, the network's outputs (V, 2h)
  and the targets (V, h) of the validation windows, float64, for the interval calibration
  (:func:`numrnn.forecast.calibration.calibrate_spread`); a trainer without it leaves the
  intervals uncalibrated;
* ``run_steps(net, opt, draws, check_loss)``: one optimiser step per ``(series, origin)`` pair of
  ``draws`` (in order), calling ``check_loss(value)`` before each step is applied; returns the
  steps' training losses.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn.forecast.network import PaddedNet
from numrnn.forecast.windows import batch
from numrnn.losses import GaussianNLLLoss
from numrnn.optim import Adam, clip_grad_norm
from numrnn.train import limit_threads

__all__ = ["LocalTrainer", "train_members", "validation_loss", "validation_outputs"]

_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")


class LocalTrainer:
    """Mini-batches built from a packed panel in this process; one forward/backward per step.

    Parameters
    ----------
    packed : Packed
        The normalised series.
    trainable : ndarray of int
        The series with at least one training origin.
    train_n : ndarray of int, shape (S,)
        Training values per series.
    validation : tuple or None
        :func:`~numrnn.forecast.windows.batch`'s windows for early stopping.
    lookback, horizon, season : int
    calendar : bool
    dtype : numpy dtype
    clip_norm : float or None
    validation_ids : ndarray of int, optional
        The validation windows' series (indices into ``packed``), for a network with a
        per-series table (:class:`~numrnn.forecast.network.PaddedNet`); training windows pass
        the series they were drawn from.
    """

    def __init__(self, packed, trainable, train_n, validation, lookback, horizon, season, calendar, dtype,
                 clip_norm, validation_ids=None):
        self.packed, self.validation, self.validation_ids = packed, validation, validation_ids
        self.trainable = trainable
        self.n_origins = train_n[trainable] - horizon  # origins t in [1, train_n - h]
        self.window = (lookback, horizon, season, calendar, dtype)
        self.clip_norm = clip_norm
        self.loss = GaussianNLLLoss()

    @property
    def has_validation(self):
        return self.validation is not None

    def validation_loss(self, net):
        return validation_loss(net, self.loss, self.validation, ids=self.validation_ids)

    def validation_outputs(self, net):
        return validation_outputs(net, self.validation, ids=self.validation_ids)

    def run_steps(self, net, opt, draws, check_loss):
        values = []
        for series, origin in draws:
            x, lengths, future, target, _ = batch(self.packed, series, origin, *self.window)
            net.zero_grad()
            value, grad = self.loss(net(x, lengths, future, series), target)
            check_loss(value)
            net.backward(grad)
            if self.clip_norm is not None:
                clip_grad_norm(net.grads, self.clip_norm)
            opt.step(net.params, net.grads)
            values.append(value)
        return values


def _draws(rng, trainer, steps, batch_size):
    """``steps`` mini-batches of (series, origin): a series uniformly, then one of its origins."""
    out = []
    for _ in range(steps):
        pick = rng.integers(0, trainer.trainable.size, batch_size)
        origin = 1 + np.floor(rng.random(batch_size) * trainer.n_origins[pick]).astype(np.int64)
        out.append((trainer.trainable[pick], origin))
    return out


def train_members(gf, trainer, specs, seed, progress):
    """Train ``gf.ensemble`` members of ``gf``'s network with ``trainer``'s gradient steps.

    Parameters
    ----------
    gf : GlobalForecaster
        Its settings (ensemble, epochs, steps_per_epoch, batch_size, lr, patience).
    trainer : LocalTrainer or DaskTrainer
        What turns mini-batches into optimiser steps (see the module docstring).
    specs : dict
        The network's specs (:func:`~numrnn.forecast.network.encoder_head_specs`).
    seed : int
    progress : bool

    Returns
    -------
    members : list of PaddedNet
        In evaluation mode, with the best validation weights restored.
    history : list of dict

    Raises
    ------
    FloatingPointError
        If a loss or the weights become non-finite (lower ``lr``).
    """
    children = np.random.SeedSequence(seed).spawn(gf.ensemble)
    members, history = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=gf.ensemble * gf.epochs, desc="GlobalForecaster", leave=False)
    try:
        with limit_threads(1), np.errstate(**_QUIET):
            for j, child in enumerate(children):
                net, hist = _train_one(gf, trainer, specs, child, j, bar)
                members.append(net)
                history.append(hist)
    finally:
        if bar is not None:
            bar.close()
    return members, history


def _train_one(gf, trainer, specs, child, j, bar):
    """Member ``j``: its epochs, early stopping on the validation loss, the best weights back."""
    init_rnn, init_head, draw = (int(s) for s in child.generate_state(3))
    net = PaddedNet(specs, (init_rnn, init_head))
    opt = Adam(lr=gf.lr)
    rng = np.random.default_rng(draw)
    hist = {"train_loss": [], "val_loss": [], "best_epoch": -1, "best_val_loss": math.inf, "epochs_run": 0}
    best, waited = None, 0
    for epoch in range(gf.epochs):

        def check_loss(value, epoch=epoch):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"training diverged: the loss of member {j + 1}/{gf.ensemble} became {value} at "
                    f"epoch {epoch}; lower lr (got {gf.lr:g})"
                )

        net.train()
        total = 0.0
        for value in trainer.run_steps(net, opt, _draws(rng, trainer, gf.steps_per_epoch, gf.batch_size),
                                       check_loss):
            total += value
        hist["train_loss"].append(total / gf.steps_per_epoch)
        hist["epochs_run"] = epoch + 1
        postfix = {"member": f"{j + 1}/{gf.ensemble}", "epoch": epoch + 1}
        if trainer.has_validation:
            net.eval()
            val_loss = trainer.validation_loss(net)
            hist["val_loss"].append(val_loss)
            postfix["val"] = f"{val_loss:.4g}"
            if val_loss < hist["best_val_loss"]:
                hist["best_val_loss"], hist["best_epoch"] = val_loss, epoch
                best, waited = net.state_dict(), 0
            else:
                waited += 1
        if bar is not None:
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
        if trainer.has_validation and waited >= gf.patience:
            break
    if bar is not None:
        bar.update(gf.epochs - hist["epochs_run"])
    if best is not None:
        net.load_state_dict(best)
    else:
        hist["best_epoch"] = hist["epochs_run"] - 1
    net.eval()
    if not all(np.isfinite(p).all() for p in net.params.values()):
        raise FloatingPointError(
            f"training diverged: the weights of member {j + 1}/{gf.ensemble} are not finite; "
            f"lower lr (got {gf.lr:g})"
        )
    return net, hist


def validation_loss(net, loss, validation, chunk=1024, ids=None):
    """The mean loss of ``net`` over the validation windows, in chunks of ``chunk`` windows
    (``ids``: the windows' series, for a network with a per-series table)."""
    x, lengths, future, target, _ = validation
    total, count = 0.0, 0
    for a in range(0, len(lengths), chunk):
        sl = slice(a, a + chunk)
        value, _ = loss(net(x[:, sl], lengths[sl], future[sl], None if ids is None else ids[sl]), target[sl])
        total += value * (min(a + chunk, len(lengths)) - a)
        count += min(a + chunk, len(lengths)) - a
    return total / count


def validation_outputs(net, validation, chunk=1024, ids=None):
    """``net``'s outputs (V, 2h) on the validation windows and their targets (V, h), float64.

    The outputs are computed in chunks of ``chunk`` windows, with one thread (``ids``: the
    windows' series, for a network with a per-series table).
    """
    x, lengths, future, target, _ = validation
    outs = []
    with limit_threads(1), np.errstate(**_QUIET):
        for a in range(0, len(lengths), chunk):
            sl = slice(a, a + chunk)
            outs.append(np.asarray(net(x[:, sl], lengths[sl], future[sl], None if ids is None else ids[sl]),
                                   dtype=np.float64))
    return np.concatenate(outs), np.asarray(target, dtype=np.float64)
