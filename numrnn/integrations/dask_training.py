"""Data-parallel training and forecasting of a :class:`~numrnn.forecast.GlobalForecaster` on Dask.

``gf.fit(data, client=client)`` calls :func:`fit_on_dask`; ``gf.predict(data, client=client)``
calls :func:`predict_on_dask`.  Dask is imported inside the functions: importing this module
does not import it.

The algorithm
-------------
* **Shards.**  The series are cut into shards of whole series: a dask DataFrame's partitions
  (each must hold whole series; ``unique_id`` a column or the index), or ``shards`` contiguous
  blocks of a pandas DataFrame's sorted series.  Each shard is read, scaled and packed *on a
  worker*, as a Dask future that the steps depend on; for a dask DataFrame the driver only ever
  holds the series' keys and lengths.
* **Actors.**  Each shard has a :class:`ShardTrainer` actor on the worker holding it, which the
  driver calls directly (no task through the scheduler per step): a round trip measured 2.8 ms
  on a ``LocalCluster``, against 11.8 ms for ``submit`` and ``gather`` of tasks.
* **One step** (``local_steps=1``).  The driver draws the mini-batch of (series, origin) pairs
  exactly as the single-process fit does (same generator, same global series order), sends the
  current parameters with each shard's rows of it to that shard, and every shard returns the
  gradient of its rows' part of the batch loss, :math:`g_s = \\partial (\\sum_{r \\in s} \\ell_r / N)`,
  ``N`` the batch's target count.  The driver sums :math:`g = ((g_0 + g_1) + g_2) + \\dots` in
  *shard order* (not arrival order), clips it and takes one Adam step.  The validation loss is
  summed the same way.
* **Equality.**  Nothing depends on which worker computes a shard or when, so the parameters are
  the same bits on 1, 2 or any number of workers (tested).  The single-process fit computes the
  same gradient with one forward/backward over the whole batch; the two differ only in the
  order of the floating-point sums over the batch (within each kernel's reductions and across
  shards), to about 1e-7 relative per step in float32 and 1e-16 in float64 (tested: after a
  short fit, parameters within 1e-6 relative in float32 and 1e-12 in float64; the gap grows
  slowly with the steps: 1.7e-6 of each tensor's largest entry after 60 float32 steps of 4,096
  windows in ``asv_benchmarks/scale_out_global.py``; bit-identical
  equality would need the kernels' batch reductions split at the shard boundaries, and the
  single-process fit is kept bit-identical to what it was instead).
* **Local steps** (``local_steps=K > 1``, local SGD).  Each shard takes K Adam steps on its own
  rows of K consecutive mini-batches (its gradient the mean over its rows, clipped), from the
  driver's parameters and Adam state; the driver then averages the shards' parameters and Adam
  moments weighted by the rows each saw, in shard order.  One round trip per K steps instead
  of one per step; the result still does not depend on the number of workers, but it is no
  longer the single-process fit.
* **Faults.**  Shards are Dask futures with their lineage (the partition, or the shard's series
  inline in the graph).  When a worker dies its actors' futures fail; the driver (checking every
  :attr:`DaskTrainer.POLL_S` seconds while it waits) builds new actors, the scheduler rebuilds
  their shards on the surviving or restarted workers, and the round reruns with the same
  arguments: the fit carries on, with the same result (tested by killing a worker mid-fit).  If the workers do not answer within ``timeout``
  seconds, or a task fails (Dask's ``KilledWorker`` after repeated losses), the fit raises
  ``RuntimeError`` naming the workers lost since it began.

Set the workers up first with :func:`numrnn.integrations.dask.prepare_workers` (one Numba thread,
the shared cache, kernels warm).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time

import numpy as np

from numrnn import _validation as check
from numrnn.forecast.panel import Panel, as_panel, future_exog, is_frame

__all__ = ["DaskTrainer", "ShardTrainer", "fit_on_dask", "predict_on_dask"]

#: Shards of a pandas DataFrame when ``shards`` is not given (independent of the cluster's size,
#: so that the default result is too).
DEFAULT_SHARDS = 8

_QUIET = dict(over="ignore", invalid="ignore", divide="ignore", under="ignore")
_NETS = {}  # on a worker: one network per specs (its parameters are overwritten by every task)


# ---------------------------------------------------------------------- on the workers


class _ActorLost(Exception):
    """A shard's actor was lost with its worker (the round is rerun on rebuilt actors)."""


class Shard:
    """Whole series held on one worker, packed for training.

    Attributes
    ----------
    packed : Packed
        The shard's normalised series (local indices ``0 .. len(keys) - 1``).
    window : tuple
        ``(lookback, horizon, season, calendar, dtype)``, the arguments of
        :func:`~numrnn.forecast.windows.batch` after the (series, origin) pairs.
    validation : tuple or None
        The windows of the shard's validation series.
    """

    def __init__(self, packed, window, validation):
        self.packed, self.window, self.validation = packed, window, validation

    def __sizeof__(self):
        """Bytes held (what Dask's ``sizeof`` reports): the scheduler then keeps each step's task
        on the worker holding the shard instead of moving a shard it would think tiny."""
        arrays = [self.packed.zn, self.packed.n, self.packed.off] + [a for a in (self.packed.xn,) if a is not None]
        arrays += [a for a in (self.validation or ()) if a is not None]
        return object.__sizeof__(self) + sum(a.nbytes for a in arrays)


def _load_partition(part, exog=()):
    """A pandas partition (``unique_id`` a column or the index) as a Panel with the regressors
    ``exog`` selects (:func:`~numrnn.forecast.panel.as_panel`); None when empty."""
    if "unique_id" not in part.columns and part.index.name == "unique_id":
        part = part.reset_index()
    if len(part) == 0:
        return None
    return as_panel(part, name="a partition of data", exog=exog)


def _describe(panel):
    """What the driver needs of a shard: keys, lengths and its dates' frequency."""
    if panel is None:
        return {"keys": [], "n": np.zeros(0, dtype=np.int64), "dates": None, "exog": []}
    dates = panel.dates
    return {"keys": list(panel.keys), "n": np.array([len(v) for v in panel.values], dtype=np.int64),
            "dates": {"kind": dates["kind"], "freq": dates["freq"],
                      "ordinal0": None if dates["ordinal0"] is None else True},
            "exog": list(panel.exog_names) if panel.exog is not None else []}


def _pack(panel, horizon, transform, settings, dtype, val_local):
    """Scale and pack a shard's series and regressors (as the single-process fit does) and its
    validation windows."""
    from numrnn.forecast.preprocessing import ExogScaler, SeriesScaler
    from numrnn.forecast.windows import Packed, batch

    season, lookback, calendar = settings
    n = np.array([len(v) for v in panel.values], dtype=np.int64)
    train_n = np.where(n >= 2 * horizon + 1, n - horizon, n)
    packs = SeriesScaler(transform).fit(panel.values, train_n).transform_values(panel.values)
    xs = None
    if panel.exog is not None and panel.exog_names:
        history = [x[:k] for x, k in zip(panel.exog, n.tolist())]
        xs = ExogScaler().fit(history, train_n).transform(history)
    packed = Packed(packs, panel.dates["ordinal0"] if calendar else None, xs)
    if not np.isfinite(packed.zn).all():
        raise ValueError("the series' values are too large to normalise (near the float64 limit?)")
    if xs is not None and not np.isfinite(packed.xn).all():
        raise ValueError("the exogenous regressors are too large to normalise (near the float64 limit?)")
    window = (lookback, horizon, season, calendar, dtype)
    validation = None
    if len(val_local):
        validation = batch(packed, val_local, packed.n[val_local] - horizon, *window)
    return Shard(packed, window, validation)


@contextlib.contextmanager
def _one_thread():
    """One Numba thread for this task (thread-local, restored after): a worker whose process
    imported numba before ``NUMBA_NUM_THREADS=1`` reached it would otherwise run its kernels on
    every core and oversubscribe the machine it shares with the other workers."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with np.errstate(**_QUIET):
            yield
    finally:
        numba.set_num_threads(previous)


def _network(specs, params):
    """This worker's network for ``specs``, holding ``params``."""
    from numrnn.forecast.network import PaddedNet

    key = json.dumps(specs, sort_keys=True)
    net = _NETS.get(key)
    if net is None:
        net = _NETS[key] = PaddedNet(specs, (0, 0))
    own = net.params
    for name, value in params.items():
        np.copyto(own[name], value)
    return net


def _shard_gradient(shard, specs, params, series, origin, n_total):
    """The gradient of this shard's rows' part of the batch loss, and their loss sum."""
    from numrnn.forecast.windows import batch
    from numrnn.losses import GaussianNLLLoss

    with _one_thread():
        net = _network(specs, params)
        net.train()
        net.zero_grad()
        x, lengths, future, target, _ = batch(shard.packed, series, origin, *shard.window)
        value, grad, n = GaussianNLLLoss().evaluate(net(x, lengths, future), target)
        grad *= grad.dtype.type(n / n_total)  # d(sum of this shard's losses / N), N the batch's count
        net.backward(grad)
        return {name: g.copy() for name, g in net.grads.items()}, value * n


def _shard_local(shard, specs, params, opt_state, rows, clip_norm):
    """``len(rows)`` Adam steps on this shard's rows alone; the parameters and Adam state after."""
    from numrnn.forecast.windows import batch
    from numrnn.losses import GaussianNLLLoss
    from numrnn.optim import Adam, clip_grad_norm

    loss = GaussianNLLLoss()
    sums, counts = [], []
    with _one_thread():
        net = _network(specs, params)
        net.train()
        opt = Adam(**opt_state["config"])
        if opt_state["steps"]:
            opt.load_state_dict(opt_state)
        for series, origin in rows:
            if not len(series):
                sums.append(0.0)
                counts.append(0)
                continue
            x, lengths, future, target, _ = batch(shard.packed, series, origin, *shard.window)
            net.zero_grad()
            value, grad, n = loss.evaluate(net(x, lengths, future), target)
            if not math.isfinite(value):
                sums.append(value)
                counts.append(n)
                break
            net.backward(grad)
            if clip_norm is not None:
                clip_grad_norm(net.grads, clip_norm)
            opt.step(net.params, net.grads)
            sums.append(value * n)
            counts.append(n)
        return {name: p.copy() for name, p in net.params.items()}, opt.state_dict(), sums, counts


def _shard_validation_outputs(shard, specs, params):
    """The network's outputs (V_s, 2h) on this shard's validation windows and their targets (V_s, h)."""
    from numrnn.forecast.global_training import validation_outputs

    net = _network(specs, params)
    net.eval()
    return validation_outputs(net, shard.validation)


def _shard_validation(shard, specs, params, chunk=1024):
    """The sum of the validation losses of this shard's windows (per-window means), and their count."""
    from numrnn.losses import GaussianNLLLoss

    x, lengths, future, target, _ = shard.validation
    loss = GaussianNLLLoss()
    total = 0.0
    with _one_thread():
        net = _network(specs, params)
        net.eval()
        for a in range(0, len(lengths), chunk):
            sl = slice(a, a + chunk)
            value, _ = loss(net(x[:, sl], lengths[sl], future[sl]), target[sl])
            total += value * (min(a + chunk, len(lengths)) - a)
    return total, len(lengths)


class ShardTrainer:
    """One shard's training work, run on the worker holding the shard (a Dask actor).

    The driver calls its methods directly on that worker, without a task through the
    scheduler for each step: a round trip of about 2 ms on a ``LocalCluster`` instead of
    about 11 ms for ``submit`` and ``gather``.  It keeps no state beyond its shard: every call
    brings the parameters, so a lost actor is rebuilt from the shard's future and its call
    rerun with the same result.

    Parameters
    ----------
    shard : Shard
    """

    def __init__(self, shard):
        from numrnn.integrations._malloc import tune_worker_malloc

        tune_worker_malloc()  # Dask's MALLOC_TRIM_THRESHOLD_ costs the kernels 1.5x otherwise
        self.shard = shard

    def gradient(self, specs, params, series, origin, n_total):
        """:func:`_shard_gradient` of this shard."""
        return _shard_gradient(self.shard, specs, params, series, origin, n_total)

    def local_steps(self, specs, params, opt_state, rows, clip_norm):
        """:func:`_shard_local` of this shard."""
        return _shard_local(self.shard, specs, params, opt_state, rows, clip_norm)

    def validation(self, specs, params):
        """:func:`_shard_validation` of this shard."""
        return _shard_validation(self.shard, specs, params)

    def validation_outputs(self, specs, params):
        """:func:`_shard_validation_outputs` of this shard."""
        return _shard_validation_outputs(self.shard, specs, params)


# ---------------------------------------------------------------------- the driver's trainer


class DaskTrainer:
    """Gradient steps computed by the shards on Dask workers (a trainer for
    :func:`numrnn.forecast.global_training.train_members`).

    Each shard has a :class:`ShardTrainer` actor on the worker holding it; a round (one step's
    gradients, K local steps, a validation loss) calls every shard's actor and waits for all.

    Parameters
    ----------
    client : distributed.Client
    shards : list of distributed.Future
        The packed shards (:class:`Shard`), in shard order.
    starts : ndarray of int, shape (n_shards + 1,)
        Shard ``s`` holds the global series ``starts[s] .. starts[s + 1] - 1``.
    trainable, n_origins : ndarray of int
        As for :class:`~numrnn.forecast.global_training.LocalTrainer`.
    val_shards : list of int
        The shards holding validation windows, in shard order (empty: no validation).
    specs : dict
    horizon : int
    clip_norm : float or None
    local_steps : int
    timeout : float
        Seconds to wait for one round of results.
    placement : list of dict
        Each shard's ``client.submit`` placement arguments (``workers``, ``allow_other_workers``)
        or ``{}``: its actor goes where the shard went (one actor per worker thread runs at a time,
        so two shards' actors on one worker would take turns).
    workers : iterable of str
        The workers when the fit began (those missing later are named as lost).
    """

    #: Seconds between checks, while a round runs, that no shard's worker was lost.
    POLL_S = 0.25
    #: Rebuilds of lost actors allowed in one round before the fit gives up.
    MAX_REBUILDS = 4

    def __init__(self, client, shards, starts, trainable, n_origins, val_shards, specs, horizon, clip_norm,
                 local_steps, timeout, placement, workers):
        self.client, self.shards, self.starts = client, shards, starts
        self.trainable, self.n_origins = trainable, n_origins
        self.val_shards = list(val_shards)
        self.has_validation = bool(self.val_shards)
        self.specs, self.horizon, self.clip_norm = specs, horizon, clip_norm
        self.local_steps, self.timeout, self.placement = local_steps, timeout, placement
        self.workers = set(workers)
        self.round_trips = 0
        self.actor_futures = [None] * len(shards)
        self.actors = [None] * len(shards)

    def _split(self, series, origin):
        """Each shard's (local series, origin) rows of a mini-batch, in batch order."""
        shard = np.searchsorted(self.starts, series, side="right") - 1
        return [(series[shard == s] - self.starts[s], origin[shard == s]) for s in range(len(self.shards))]

    def _failure(self, what, exc):
        """The RuntimeError of a failed cluster: what was awaited, why, and the workers lost."""
        lost = sorted(self.workers - set(self.client.scheduler_info()["workers"]))
        return RuntimeError(
            f"the global fit on Dask failed while waiting for {what} ({type(exc).__name__}: {exc}); "
            f"workers lost since the fit began: {lost or 'none'} (timeout={self.timeout:g} s)"
        )

    def start(self):
        """Build the shards and their actors (one round trip); raises what building a shard raised."""
        self.round_trips += 1
        self._ensure_actors(range(len(self.shards)), "the shards to be built", time.monotonic() + self.timeout)

    def _ensure_actors(self, shard_ids, what, deadline):
        """An actor for each of ``shard_ids``, (re)built where missing or lost."""
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        for s in shard_ids:
            if self.actor_futures[s] is not None and self.actor_futures[s].status == "error":
                self.actor_futures[s] = self.actors[s] = None  # its worker was lost
            if self.actor_futures[s] is None:
                self.actor_futures[s] = self.client.submit(ShardTrainer, self.shards[s], actor=True, pure=False,
                                                           **self.placement[s])
        for s in shard_ids:
            if self.actors[s] is None:
                try:
                    self.actors[s] = self.actor_futures[s].result(timeout=max(deadline - time.monotonic(), 0.001))
                except (TimeoutError, KilledWorker, CancelledError, OSError) as exc:  # the cluster's failures
                    raise self._failure(what, exc) from exc
                except RuntimeError as exc:  # "Worker holding Actor was lost" while it started
                    if "lost" not in str(exc):
                        raise
                    raise _ActorLost() from exc

    def _round(self, method, calls, what):
        """``method`` of the actors of the shards in ``calls`` (``{shard: args}``), results in shard order.

        A lost worker's actors are rebuilt (their shards recomputed by Dask from their lineage)
        and the round rerun: the same arguments give the same results.  A timeout or a cluster
        failure raises ``RuntimeError`` naming the workers lost since the fit began; an error
        raised by the method itself (a ``ValueError`` for bad data) is raised as it is.
        """
        self.round_trips += 1
        deadline = time.monotonic() + self.timeout
        ids = list(calls)
        for _ in range(self.MAX_REBUILDS + 1):
            try:
                self._ensure_actors(ids, what, deadline)
                pending = [getattr(self.actors[s], method)(*calls[s]) for s in ids]
                return [self._wait(call, ids, what, deadline) for call in pending]
            except _ActorLost:
                continue
        raise self._failure(what, RuntimeError(f"workers kept being lost ({self.MAX_REBUILDS} rebuilds)"))

    def _wait(self, call, ids, what, deadline):
        """The result of one actor call, checking every :attr:`POLL_S` that no shard's actor was lost."""
        while True:
            try:
                return call.result(timeout=max(min(self.POLL_S, deadline - time.monotonic()), 0.001))
            except TimeoutError:
                pass
            except OSError as exc:  # "Unable to contact Actor's worker": rebuild and rerun
                raise _ActorLost() from exc
            if any(self.actor_futures[s].status == "error" for s in ids):
                raise _ActorLost()
            if time.monotonic() >= deadline:
                raise self._failure(what, TimeoutError(f"no answer within {self.timeout:g} s"))

    def close(self):
        """Release the actors and the shards."""
        self.client.cancel([f for f in self.actor_futures if f is not None] + list(self.shards))

    def run_steps(self, net, opt, draws, check_loss):
        if self.local_steps == 1:
            return [self._step(net, opt, series, origin, check_loss) for series, origin in draws]
        values = []
        for a in range(0, len(draws), self.local_steps):
            values += self._local_round(net, opt, draws[a : a + self.local_steps], check_loss)
        return values

    def _step(self, net, opt, series, origin, check_loss):
        from numrnn.optim import clip_grad_norm

        n_total = len(series) * self.horizon
        params = {name: p.copy() for name, p in net.params.items()}
        calls = {s: (self.specs, params, rows, origins, n_total)
                 for s, (rows, origins) in enumerate(self._split(series, origin)) if len(rows)}
        results = self._round("gradient", calls, "the shards' gradients")
        grads = net.grads
        total = 0.0
        for k, (g, value_sum) in enumerate(results):  # shard order, whatever the arrival order
            for name, arr in grads.items():
                if k == 0:
                    np.copyto(arr, g[name])
                else:
                    arr += g[name]
            total += value_sum
        value = total / n_total
        check_loss(value)
        if self.clip_norm is not None:
            clip_grad_norm(grads, self.clip_norm)
        opt.step(net.params, grads)
        return value

    def _local_round(self, net, opt, draws, check_loss):
        params = {name: p.copy() for name, p in net.params.items()}
        state = opt.state_dict()
        per_shard = [[] for _ in self.shards]
        for series, origin in draws:
            for s, rows in enumerate(self._split(series, origin)):
                per_shard[s].append(rows)
        calls = {s: (self.specs, params, state, rows, self.clip_norm)
                 for s, rows in enumerate(per_shard) if any(len(r[0]) for r in rows)}
        results = self._round("local_steps", calls, "the shards' local steps")
        weights = np.array([sum(counts) for _, _, _, counts in results], dtype=np.float64)
        weights /= weights.sum()
        own = net.params
        for name, arr in own.items():  # rows-weighted averages, in shard order
            np.copyto(arr, sum(w * r[0][name].astype(np.float64) for w, r in zip(weights, results)), casting="unsafe")
        merged = results[0][1]
        for name, slots in merged["state"].items():
            for slot in slots:
                slots[slot] = sum(w * r[1]["state"][name][slot].astype(np.float64) for w, r in zip(weights, results)
                                  ).astype(own[name].dtype)
        merged["steps"] = max(r[1]["steps"] for r in results)
        opt.load_state_dict(merged)
        values = []
        for k in range(len(draws)):
            value = sum(r[2][k] for r in results if k < len(r[2])) / (len(draws[k][0]) * self.horizon)
            check_loss(value)
            values.append(value)
        return values

    def validation_outputs(self, net):
        """``net``'s outputs (V, 2h) on every validation window and their targets (V, h), float64, in
        shard order (for :meth:`GlobalForecaster._calibration`, which pools them)."""
        params = {name: p.copy() for name, p in net.params.items()}
        calls = {s: (self.specs, params) for s in self.val_shards}
        results = self._round("validation_outputs", calls, "the validation outputs")
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def validation_loss(self, net):
        params = {name: p.copy() for name, p in net.params.items()}
        calls = {s: (self.specs, params) for s in self.val_shards}
        results = self._round("validation", calls, "the validation losses")
        return sum(r[0] for r in results) / sum(r[1] for r in results)


# ---------------------------------------------------------------------- fit


def _check_client(client):
    from distributed import Client

    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")


def _blocks(panel, count):
    """``panel`` cut into ``count`` contiguous Panels of whole series (sizes differing by at most 1)."""
    out = []
    for idx in np.array_split(np.arange(len(panel.keys)), count):
        if not idx.size:
            continue
        a, b = int(idx[0]), int(idx[-1]) + 1
        dates = None
        if panel.dates is not None:
            d = panel.dates
            dates = {**d, "start": d["start"][a:b], "ordinal0": None if d["ordinal0"] is None else d["ordinal0"][a:b]}
        exog = None if panel.exog is None else panel.exog[a:b]
        out.append(Panel(panel.keys[a:b], panel.values[a:b], panel.source, dates, exog, panel.exog_names))
    return out


def _sources(data, client, shards, timeout, placement, exog=()):
    """The shards' series (Panels here, or futures of Panels on the workers), their descriptions,
    and the driver's panel (None for a dask DataFrame); ``exog`` as for :func:`as_panel`."""
    if is_frame(data):
        count = DEFAULT_SHARDS if shards is None else check.check_int(shards, "shards", 1)
        panel = as_panel(data, exog=exog)
        blocks = _blocks(panel, min(count, len(panel.keys)))
        return blocks, [_describe(b) for b in blocks], panel
    import dask.dataframe as dd

    if not isinstance(data, dd.DataFrame):
        raise TypeError(f"data must be a pandas or dask DataFrame to fit with a client, got {type(data).__name__}")
    if shards is not None:
        raise ValueError(f"shards applies to a pandas DataFrame: a dask DataFrame's partitions are its shards "
                         f"(got shards={shards!r}; repartition the frame instead)")
    has_id = "unique_id" in data.columns or data.index.name == "unique_id"
    missing = [c for c in ("ds", "y") if c not in data.columns] + ([] if has_id else ["unique_id"])
    if missing:
        raise ValueError(f"data lacks column(s) {missing}: a long DataFrame needs unique_id (column or index), ds, y")
    from distributed import wait

    parts = client.compute(data.to_delayed(), **placement)
    panels = client.map(_load_partition, parts, exog=exog, pure=False, **placement)
    described = client.map(_describe, panels, pure=False, **placement)
    wait(described, timeout=timeout)
    metas = client.gather(described)
    keep = [i for i, m in enumerate(metas) if len(m["keys"])]
    return [panels[i] for i in keep], [metas[i] for i in keep], None


def _common_dates(metas):
    """One dates description for all shards; ValueError when their frequencies disagree."""
    first = metas[0]["dates"]
    for i, m in enumerate(metas[1:], 1):
        d = m["dates"]
        if d["kind"] != first["kind"] or d["freq"] != first["freq"]:
            raise ValueError(
                f"the partitions of data disagree on the frequency of 'ds': partition 0 has {first['freq']!r} "
                f"({first['kind']}), partition {i} has {d['freq']!r} ({d['kind']})"
            )
    ordinal = all(m["dates"]["ordinal0"] is not None for m in metas)
    return {**first, "ordinal0": True if ordinal else None}


def _check_whole_series(metas):
    seen = {}
    for i, m in enumerate(metas):
        for key in m["keys"]:
            if key in seen:
                raise ValueError(
                    f"unique_id {key!r} is in partitions {seen[key]} and {i} of data: each partition must hold "
                    "whole series (data.set_index('unique_id') or data.shuffle('unique_id') first)"
                )
            seen[key] = i


def _common_exog(metas):
    """The regressors' names, the same in every shard; ValueError naming the partitions otherwise."""
    first = metas[0]["exog"]
    for i, m in enumerate(metas[1:], 1):
        if m["exog"] != first:
            raise ValueError(f"the partitions of data disagree on the exogenous regressors: partition 0 has {first}, "
                             f"partition {i} has {m['exog']} (pass exog=[...] to choose them)")
    return first


def fit_on_dask(gf, data, client, shards=None, local_steps=1, timeout=300.0, progress=False, workers=None, exog=None):
    """Fit ``gf`` data-parallel on ``client``'s workers; returns its fitted state.

    Called by :meth:`GlobalForecaster.fit` with a ``client`` (see the module docstring for the
    algorithm and its equality with the single-process fit).

    Parameters
    ----------
    gf : GlobalForecaster
    data : pandas.DataFrame or dask.dataframe.DataFrame
        Long format (``unique_id``, ``ds``, ``y``).  A dask DataFrame's partitions are the
        shards: each must hold whole series; series are ordered by partition, then by
        ``unique_id`` (partitions from ``set_index("unique_id")`` give the pandas order, and
        the pandas fit's window draws).
    client : distributed.Client
    shards : int, optional
        For a pandas DataFrame: blocks of series (default :data:`DEFAULT_SHARDS`).
    local_steps : int, default 1
    timeout : float, default 300
        Seconds to wait for one round of results (and for the shards to be built).
    progress : bool, default False
    workers : list of str, optional
        Worker addresses to run on (only these: ``allow_other_workers=False``); None lets
        Dask place the shards on any worker.
    exog : None or list of str, default None
        The exogenous regressors, as :meth:`GlobalForecaster.fit` takes them (None: every
        column besides ``unique_id``, ``ds`` and ``y``); each shard standardises its series'
        regressors on their training part, as the single-process fit does.

    Returns
    -------
    dict
        The fitted state :class:`GlobalForecaster` keeps (``panel`` None for a dask DataFrame).

    Raises
    ------
    TypeError, ValueError
        For a bad client, argument or data (naming it; a partition splitting a series names the
        series and both partitions).
    RuntimeError
        When the workers do not answer within ``timeout`` or keep dying, naming the lost workers.
    """
    from numrnn.forecast.global_training import train_members

    _check_client(client)
    local_steps = check.check_int(local_steps, "local_steps", 1)
    timeout = check.check_positive_float(timeout, "timeout")
    placement = {}
    if workers is not None:
        if not isinstance(workers, (list, tuple)) or not workers or not all(isinstance(w, str) for w in workers):
            raise TypeError(f"workers must be a non-empty list of worker addresses, got {workers!r}")
        placement = {"workers": list(workers), "allow_other_workers": False}
    sources, metas, panel = _sources(data, client, shards, timeout, placement, exog)
    if not metas:
        raise ValueError("data is an empty DataFrame: every series needs at least one value")
    _check_whole_series(metas)
    keys = [k for m in metas for k in m["keys"]]
    n = np.concatenate([m["n"] for m in metas])
    starts = np.concatenate([[0], np.cumsum([len(m["keys"]) for m in metas])]).astype(np.int64)
    settings = gf._settings(_common_dates(metas))
    seed = check.check_seed(gf.seed, "seed")
    train_n, validated, trainable, val_idx = gf._plan(n, seed)
    h = gf.horizon
    futures = []
    present = sorted(client.scheduler_info()["workers"])
    spread = present if not placement else None
    wheres = [placement or ({"workers": [spread[s % len(spread)]], "allow_other_workers": True} if spread else {})
              for s in range(len(sources))]  # shards round-robin over the workers; their actors with them
    for s, source in enumerate(sources):
        val_local = val_idx[(val_idx >= starts[s]) & (val_idx < starts[s + 1])] - starts[s]
        futures.append(client.submit(_pack, source, h, gf.transform, settings, gf.dtype, val_local, pure=False,
                                     **wheres[s]))
    names = _common_exog(metas)
    specs = gf._specs(settings[2], len(names))
    val_shards = [s for s in range(len(futures)) if ((val_idx >= starts[s]) & (val_idx < starts[s + 1])).any()]
    trainer = DaskTrainer(client, futures, starts, trainable, train_n[trainable] - h, val_shards, specs, h,
                          gf.clip_norm, local_steps, timeout, wheres, present)
    try:
        trainer.start()
        members, history = train_members(gf, trainer, specs, seed, progress)
        calibration = gf._calibration(trainer, members)
    finally:
        trainer.close()
    fitted = gf._record(members, history, specs, panel, keys, train_n, validated, settings, seed, calibration,
                        names)
    fitted["round_trips"] = trainer.round_trips
    return fitted


# ---------------------------------------------------------------------- predict

#: The fitted state a worker's forecast reads besides the members and the training keys.
_FORECAST_STATE = ("lookback", "season_length", "calendar", "calibration", "exog", "anchor_seasons", "untrained_ids")


def _payload(gf, fitted):
    """What a worker needs to forecast: settings, calibration, training keys and weights (no series)."""
    forecaster = copy.copy(gf)  # the settings only: the weights travel as state dicts
    forecaster._fitted = None
    state = {**{key: fitted.get(key) for key in _FORECAST_STATE}, "exog": list(fitted.get("exog", ()))}
    return {"forecaster": forecaster, "specs": fitted["specs"], "train_keys": list(fitted["train_keys"]), **state,
            "states": [net.state_dict() for net in fitted["members"]]}


def _forecast_panel(panel, payload, levels, future=None, x_df=None):
    """Forecasts of a Panel (or a pandas partition) from a :func:`_payload`, as ``predict`` formats
    them.  For a model with regressors: ``future``, their values at the forecast steps of the
    Panel's series (:func:`~numrnn.forecast.panel.future_exog`), or ``x_df`` to read them from."""
    from numrnn.forecast.network import PaddedNet

    names = payload["exog"]
    if not isinstance(panel, Panel):
        panel = _load_partition(panel, exog=names)
        if panel is None:
            return _empty(payload, levels)
    gf = payload["forecaster"]
    members = []
    for state in payload["states"]:
        net = PaddedNet(payload["specs"], (0, 0))
        net.load_state_dict(state)
        members.append(net)
    fitted = {"members": members, "train_keys": payload["train_keys"], **{k: payload[k] for k in _FORECAST_STATE}}
    if names and future is None and x_df is not None:
        gf._check_exog_panel(fitted, panel)
        future = future_exog(x_df, panel, names, gf.horizon)
    return gf._forecast(fitted, panel, levels, future)


def _empty(payload, levels, ds_dtype="datetime64[ns]"):
    """An empty forecast frame with ``predict``'s columns (the dask output's meta)."""
    import pandas as pd

    from numrnn.forecast.panel import level_name

    cols = {"unique_id": pd.Series([], dtype=object), "ds": pd.Series([], dtype=ds_dtype),
            "yhat": pd.Series([], dtype=np.float64)}
    for lv in levels:
        cols[f"yhat-lo-{level_name(lv)}"] = pd.Series([], dtype=np.float64)
        cols[f"yhat-hi-{level_name(lv)}"] = pd.Series([], dtype=np.float64)
    return pd.DataFrame(cols)


def predict_on_dask(gf, fitted, data, levels, client, X_df=None):
    """Forecast every series of ``data`` on ``client``'s workers (``gf.predict(data, client=...)``).

    Parameters
    ----------
    gf : GlobalForecaster
        Fitted.
    fitted : dict
        Its fitted state.
    data : pandas.DataFrame or dask.dataframe.DataFrame
        Histories in long format; a dask DataFrame's partitions must hold whole series.
    levels : list of float
        Checked interval levels.
    client : distributed.Client
    X_df : pandas.DataFrame, optional
        The regressors' future values, as :meth:`GlobalForecaster.predict` takes them: read and
        checked here for a pandas ``data``, read by each partition for a dask one.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        As :meth:`GlobalForecaster.predict` formats a DataFrame's forecasts: a pandas DataFrame
        (in ``unique_id`` order) for a pandas one; for a dask one, a dask DataFrame with one
        partition per input partition, persisted on the workers (computing there).
    """
    _check_client(client)
    payload = _payload(gf, fitted)
    names = payload["exog"]
    if names and X_df is None:
        raise ValueError(f"this model was fitted with the exogenous regressors {names}: pass their future values "
                         f"as X_df (columns unique_id, ds, {', '.join(map(repr, names))})")
    if data is None or is_frame(data):
        import pandas as pd

        if data is None and fitted["panel"] is None:
            raise ValueError("this forecaster was fitted on a dask DataFrame and keeps no training series: "
                             "pass data to predict()")
        panel = fitted["panel"] if data is None else as_panel(data, exog=names)
        if panel.source != "frame":
            raise TypeError("predict(client=...) takes a DataFrame (the fit's series were arrays: pass no client)")
        future = None
        if names:  # read and checked here, before anything is sent
            gf._check_exog_panel(fitted, panel)
            future = future_exog(X_df, panel, names, gf.horizon)
        workers = max(1, len(client.scheduler_info()["workers"]))
        blocks = _blocks(panel, min(2 * workers, len(panel.keys)))
        starts = np.cumsum([0] + [len(b.keys) for b in blocks])
        futures = [client.submit(_forecast_panel, b, payload, levels, None if future is None else future[a:z],
                                 pure=False) for b, a, z in zip(blocks, starts[:-1], starts[1:])]
        return pd.concat(client.gather(futures), ignore_index=True)
    import dask.dataframe as dd

    if not isinstance(data, dd.DataFrame):
        raise TypeError(f"data must be a pandas or dask DataFrame to predict with a client, got {type(data).__name__}")
    ds = data["ds"].dtype
    meta = _empty(payload, levels, ds if np.issubdtype(ds, np.integer) else "datetime64[ns]")
    out = data.map_partitions(_forecast_panel, payload, levels, None, X_df if names else None, meta=meta,
                              enforce_metadata=False, align_dataframes=False)
    return client.persist(out)
