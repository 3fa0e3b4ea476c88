"""Training of the GlobalForecaster's ensemble: Adam on mini-batches of windows drawn from every series.

Each member draws its windows from its own NumPy generator (seeds spawned from the forecaster's
seed), so the same seed and data give the same weights bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from numrnn.forecast.network import PaddedNet
from numrnn.forecast.windows import batch
from numrnn.losses import GaussianNLLLoss
from numrnn.optim import Adam, clip_grad_norm
from numrnn.train import limit_threads

__all__ = ["train_members", "validation_loss"]

_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")


def train_members(gf, packed, trainable, train_n, validation, specs, lookback, season, calendar, seed, progress):
    """Train ``gf.ensemble`` members of ``gf``'s network on windows of the packed panel.

    Parameters
    ----------
    gf : GlobalForecaster
        Its settings (horizon, ensemble, epochs, steps_per_epoch, batch_size, lr, clip_norm,
        patience, dtype).
    packed : Packed
        The normalised series.
    trainable : ndarray of int
        The series with at least one training origin.
    train_n : ndarray of int, shape (S,)
        Training values per series.
    validation : tuple or None
        :func:`~numrnn.forecast.windows.batch`'s windows for early stopping.
    specs : dict
        The network's specs (:func:`~numrnn.forecast.network.encoder_head_specs`).
    lookback, season : int
    calendar : bool
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
    h = gf.horizon
    loss = GaussianNLLLoss()
    children = np.random.SeedSequence(seed).spawn(gf.ensemble)
    members, history = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=gf.ensemble * gf.epochs, desc="GlobalForecaster", leave=False)
    # origins t in [1, train_n - h] for each trainable series
    n_origins = train_n[trainable] - h
    try:
        with limit_threads(1), np.errstate(**_QUIET):
            for j, child in enumerate(children):
                init_rnn, init_head, draw = (int(s) for s in child.generate_state(3))
                net = PaddedNet(specs, (init_rnn, init_head))
                opt = Adam(lr=gf.lr)
                rng = np.random.default_rng(draw)
                hist = {"train_loss": [], "val_loss": [], "best_epoch": -1, "best_val_loss": math.inf,
                        "epochs_run": 0}
                best, waited = None, 0
                for epoch in range(gf.epochs):
                    net.train()
                    total = 0.0
                    for _ in range(gf.steps_per_epoch):
                        pick = rng.integers(0, trainable.size, gf.batch_size)
                        series = trainable[pick]
                        origin = 1 + np.floor(rng.random(gf.batch_size) * n_origins[pick]).astype(np.int64)
                        x, lengths, future, target, _ = batch(packed, series, origin, lookback, h, season,
                                                               calendar, gf.dtype)
                        net.zero_grad()
                        value, grad = loss(net(x, lengths, future), target)
                        if not math.isfinite(value):
                            raise FloatingPointError(
                                f"training diverged: the loss of member {j + 1}/{gf.ensemble} became {value} at "
                                f"epoch {epoch}; lower lr (got {gf.lr:g})"
                            )
                        net.backward(grad)
                        if gf.clip_norm is not None:
                            clip_grad_norm(net.grads, gf.clip_norm)
                        opt.step(net.params, net.grads)
                        total += value
                    hist["train_loss"].append(total / gf.steps_per_epoch)
                    hist["epochs_run"] = epoch + 1
                    postfix = {"member": f"{j + 1}/{gf.ensemble}", "epoch": epoch + 1}
                    if validation is not None:
                        net.eval()
                        val_loss = validation_loss(net, loss, validation)
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
                    if validation is not None and waited >= gf.patience:
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
                members.append(net)
                history.append(hist)
    finally:
        if bar is not None:
            bar.close()
    return members, history

def validation_loss(net, loss, validation, chunk=1024):
    """The mean loss of ``net`` over the validation windows, in chunks of ``chunk`` windows."""
    x, lengths, future, target, _ = validation
    total, count = 0.0, 0
    for a in range(0, len(lengths), chunk):
        sl = slice(a, a + chunk)
        value, _ = loss(net(x[:, sl], lengths[sl], future[sl]), target[sl])
        total += value * (min(a + chunk, len(lengths)) - a)
        count += min(a + chunk, len(lengths)) - a
    return total / count
