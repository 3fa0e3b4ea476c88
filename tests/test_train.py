"""Training loops: early stopping, L-BFGS convergence, truncated BPTT, gradcheck; a GRU classifier
and an LSTM language model trained on integer class targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

import numrnn
from numrnn import nn, train
from numrnn.optim import SGD, Adam


def toy_regression(rng, n=64, steps=5):
    x = rng.normal(size=(steps, n, 2))
    target = (0.5 * x[:, :, :1].sum(axis=0) - 0.2 * x[-1, :, 1:]).reshape(n, 1)
    return x, target


def small_model(seed=0, cell=numrnn.GRU):
    return nn.Sequential(cell(2, 6, dtype=np.float64, seed=seed), nn.LastStep(), nn.Linear(6, 1, dtype=np.float64, seed=seed + 1))


def test_fit_reduces_loss_and_is_deterministic(rng):
    x, target = toy_regression(rng)
    runs = []
    for _ in range(2):
        model = small_model()
        hist = train.fit(model, x, target, optimizer=Adam(lr=0.02), epochs=30, batch_size=16, seed=3)
        runs.append(model.state_dict())
        assert hist["train_loss"][-1] < 0.3 * hist["train_loss"][0]
        assert hist["epochs_run"] == 30 and hist["best_epoch"] == 29
        assert not model.training  # left in eval mode
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_early_stopping_restores_best_weights(rng):
    x, target = toy_regression(rng)
    xv, tv = x[:, :8], -target[:8]  # a validation set the model cannot fit: stops early
    model = small_model()
    hist = train.fit(model, x, target, optimizer=Adam(lr=0.05), epochs=200, validation=(xv, tv), patience=3, seed=0)
    assert hist["epochs_run"] < 200
    assert hist["epochs_run"] == hist["best_epoch"] + 1 + 3
    best = min(hist["val_loss"])
    assert hist["best_val_loss"] == best
    from numrnn.losses import MSELoss

    assert MSELoss()(model(xv), tv)[0] == pytest.approx(best, rel=1e-12)


def test_fit_progress_bar(rng, capsys):
    x, target = toy_regression(rng, n=8)
    train.fit(small_model(), x, target, epochs=2, validation=(x, target), progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "2/2" not in err.split("0/2")[0]
    train.fit(small_model(), x, target, epochs=2, progress=False)
    assert capsys.readouterr().err == ""


def test_fit_bad_arguments(rng):
    x, target = toy_regression(rng, n=8)
    model = small_model()
    before = model.state_dict()
    cases = [
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=1.5), TypeError, "batch_size"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(validation=(x,)), TypeError, "validation"),
        (dict(patience=0), ValueError, "patience"),
    ]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            train.fit(model, x, target, **kwargs)
    with pytest.raises(ValueError, match="target must have 8 samples"):
        train.fit(model, x, target[:5])
    with pytest.raises(TypeError, match="module interface"):
        train.fit(object(), x, target)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_lbfgs_converges_on_least_squares(rng):
    x = rng.normal(size=(50, 3))
    w_true, b_true = np.array([[1.5, -2.0, 0.5]]), np.array([0.3])
    target = x @ w_true.T + b_true
    lin = nn.Linear(3, 1, dtype=np.float64, seed=0)
    result = train.fit_lbfgs(lin, x, target, maxiter=200)
    assert result.fun < 1e-12
    np.testing.assert_allclose(lin.params["weight"], w_true, atol=1e-6)
    np.testing.assert_allclose(lin.params["bias"], b_true, atol=1e-6)


def test_lbfgs_on_a_recurrent_stack_with_validation(rng):
    x, target = toy_regression(rng)
    model = small_model()
    seen = []
    result = train.fit_lbfgs(model, x, target, maxiter=40, validation=(x[:, :16], target[:16]), patience=5,
                             callback=lambda it, value: seen.append(value))
    assert seen and seen[-1] < seen[0]
    assert result.best_val_loss <= min(seen) * 10
    from numrnn.losses import MSELoss

    assert MSELoss()(model(x[:, :16]), target[:16])[0] == pytest.approx(result.best_val_loss, rel=1e-12)


def test_flatten_round_trip(rng):
    params = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=4).astype(np.float32)}
    vec = train.flatten(params)
    assert vec.shape == (10,) and vec.dtype == np.float64
    target = {k: np.zeros_like(v) for k, v in params.items()}
    train.unflatten_into(target, vec)
    for k in params:
        np.testing.assert_array_equal(target[k], params[k])
    with pytest.raises(ValueError, match="vector must have shape"):
        train.unflatten_into(target, vec[:3])


def test_tbptt_one_chunk_equals_full_bptt(rng):
    x = rng.normal(size=(12, 3, 2))
    target = rng.normal(size=(12, 3, 1))
    make = lambda: nn.Sequential(numrnn.LSTM(2, 4, dtype=np.float64, seed=0), nn.Linear(4, 1, dtype=np.float64, seed=1))
    full, chunked = make(), make()
    from numrnn.losses import MSELoss

    full.zero_grad()
    value, grad = MSELoss()(full(x), target)
    full.backward(grad)
    SGD(lr=0.1).step(full.params, full.grads)
    mean, states = train.tbptt(chunked, x, target, k=12, optimizer=SGD(lr=0.1))
    assert mean == pytest.approx(value, rel=1e-12)
    for k in full.params:
        np.testing.assert_allclose(chunked.params[k], full.params[k], rtol=1e-12)
    assert states[0][0].shape == (1, 3, 4)


def test_tbptt_carries_state_but_not_gradient(rng):
    """Chunks of k: the forward pass equals the full pass; each chunk's gradient is its own."""
    x = rng.normal(size=(10, 2, 2))
    target = rng.normal(size=(10, 2, 1))
    make = lambda: nn.Sequential(numrnn.GRU(2, 3, dtype=np.float64, seed=4), nn.Linear(3, 1, dtype=np.float64, seed=5))
    model = make()
    # a negligible learning rate keeps the weights fixed: the mean chunk loss equals the full pass
    from numrnn.losses import MSELoss

    reference = make()
    full_loss = MSELoss()(reference(x), target)[0]
    mean, _ = train.tbptt(model, x, target, k=4, optimizer=SGD(lr=1e-12))
    assert mean == pytest.approx(full_loss, rel=1e-9)
    # gradient of the second chunk alone: run chunk 1 to get the state, then chunk 2 with dstate=None
    manual = make()
    manual(x[:4])
    state = manual.states
    manual.zero_grad()
    value, grad = MSELoss()(manual(x[4:8], states=state), target[4:8])
    manual.backward(grad)
    expected = {k: g.copy() for k, g in manual.grads.items()}
    probe = make()
    _, states = train.tbptt(probe, x[:4], target[:4], k=4, optimizer=SGD(lr=1e-300))
    before = probe.state_dict()
    train.tbptt(probe, x[4:8], target[4:8], k=4, optimizer=SGD(lr=1.0), states=states)
    for k in expected:
        np.testing.assert_allclose(before[k] - probe.params[k], expected[k], rtol=1e-9, atol=1e-15)


def test_tbptt_bad_arguments(rng):
    model = small_model()
    x = rng.normal(size=(4, 2, 2))
    with pytest.raises(TypeError, match="optimizer must be an Optimizer"):
        train.tbptt(model, x, np.zeros((4, 2, 1)), k=2)
    with pytest.raises(ValueError, match="k must be"):
        train.tbptt(model, x, np.zeros((4, 2, 1)), k=0, optimizer=SGD())
    with pytest.raises(TypeError, match="nn.Sequential"):
        train.tbptt(nn.Linear(2, 1), x, np.zeros((4, 2, 1)), k=2, optimizer=SGD())
    with pytest.raises(ValueError, match="target must have 4 timesteps"):
        train.tbptt(model, x, np.zeros((3, 2, 1)), k=2, optimizer=SGD())


def test_gradcheck_catches_a_wrong_gradient(rng):
    lin = nn.Linear(3, 2, dtype=np.float64, seed=0)
    x, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    good = train.make_closure(lin, "mse", x, target)
    assert max(train.gradcheck(good, lin.params).values()) < 1e-8

    def bad():
        value, grads = good()
        grads["bias"] = grads["bias"] * 1.01
        return value, grads

    with pytest.raises(train.GradcheckError, match="bias"):
        train.gradcheck(bad, lin.params)
    report = train.gradcheck(bad, lin.params, raise_exception=False)
    assert report["bias"] > 1e-6 and report["weight"] < 1e-8
    before = lin.state_dict()
    train.gradcheck(good, lin.params, max_per_param=2)
    for k in before:  # parameters restored exactly
        np.testing.assert_array_equal(lin.params[k], before[k])
    with pytest.raises(ValueError, match="keys of params"):
        train.gradcheck(lambda: (0.0, {}), lin.params)


def test_limit_threads_restores_numba_threads():
    import numba

    before = numba.get_num_threads()
    with train.limit_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with train.limit_threads(None):
        assert numba.get_num_threads() == before


# ---------------------------------------------------------------------------------- classification

from numrnn.losses import CrossEntropyLoss  # noqa: E402


def toy_classes(rng, n, steps=5, classes=3):
    """Class y shifts feature y up by 2 at every step: a GRU that sums over time can tell them apart
    (the Bayes accuracy is about 0.99)."""
    y = rng.integers(0, classes, size=n).astype(np.int32)
    x = rng.normal(size=(steps, n, classes)) + 2.0 * np.eye(classes)[y]
    return x, y


def classifier(seed=0, classes=3, hidden=8):
    return nn.Sequential(numrnn.GRU(classes, hidden, dtype=np.float64, seed=seed), nn.LastStep(),
                         nn.Linear(hidden, classes, dtype=np.float64, seed=seed + 1))


def test_fit_trains_a_gru_classifier_to_high_accuracy(rng):
    x, y = toy_classes(rng, 160)
    xv, yv = toy_classes(rng, 64)
    xt, yt = toy_classes(rng, 200)
    model = classifier()
    hist = train.fit(model, x, y, loss="cross_entropy", optimizer=Adam(lr=0.02), epochs=25, batch_size=32, seed=0,
                     validation=(xv, yv))
    assert hist["train_loss"][-1] < 0.1 * hist["train_loss"][0]
    assert CrossEntropyLoss()(model(xv), yv)[0] == pytest.approx(hist["best_val_loss"], rel=1e-12)
    accuracy = np.mean(model(xt).argmax(axis=-1) == yt)
    assert accuracy >= 0.95, accuracy


class RecordingLoss(CrossEntropyLoss):
    """A cross-entropy that keeps every target it is handed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def evaluate(self, pred, target):
        self.seen.append(target)
        return super().evaluate(pred, target)


def test_fit_hands_integer_targets_to_the_loss_as_they_are(rng):
    x, y = toy_classes(rng, 20)
    y = y.astype(np.int16)
    loss = RecordingLoss()
    train.fit(classifier(), x, y, loss=loss, optimizer=Adam(lr=0.01), epochs=2, batch_size=6, seed=1)
    assert [len(t) for t in loss.seen] == [6, 6, 6, 2] * 2
    assert all(t.dtype == np.int16 for t in loss.seen)
    for epoch in range(2):  # each epoch sees every target once
        batch = np.concatenate(loss.seen[4 * epoch : 4 * epoch + 4])
        np.testing.assert_array_equal(np.sort(batch), np.sort(y))
    # a list of labels works too and stays integer
    loss = RecordingLoss()
    train.fit(classifier(), x, y.tolist(), loss=loss, epochs=1, batch_size=20)
    assert loss.seen[0].dtype.kind == "i"


def test_fit_train_loss_is_the_epoch_as_one_batch(rng):
    """With class weights and ignored targets the epoch's loss is the loss of the whole set in one call."""
    x, y = toy_classes(rng, 23)
    y = y.astype(np.int64)
    y[[0, 5, 6, 17]] = -100
    w = np.array([0.5, 1.0, 2.0])
    for reduction in ("mean", "sum"):
        loss = CrossEntropyLoss(weight=w, label_smoothing=0.1, reduction=reduction)
        model = classifier()
        model.train()
        expected = loss(model(x), y)[0]
        hist = train.fit(model, x, y, loss=loss, optimizer=SGD(lr=1e-300), epochs=1, batch_size=4, seed=2)
        assert hist["train_loss"][0] == pytest.approx(expected, rel=1e-12)


def test_fit_skips_batches_with_every_target_ignored(rng):
    x, y = toy_classes(rng, 8)
    y = y.astype(np.int64)
    y[:4] = -100
    # one sample per batch: the four ignored ones take no step
    opt = SGD(lr=0.1)  # counts its steps
    hist = train.fit(classifier(), x, y, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=1, seed=0)
    assert opt.steps == 2 * 4 and all(math.isfinite(v) for v in hist["train_loss"])
    # one batch: the ignored samples change nothing
    model, reference = classifier(), classifier()
    train.fit(model, x, y, loss="cross_entropy", optimizer=SGD(lr=0.1), epochs=1, batch_size=8, seed=0)
    train.fit(reference, x[:, 4:], y[4:], loss="cross_entropy", optimizer=SGD(lr=0.1), epochs=1, batch_size=8, seed=0)
    for k, v in model.params.items():
        np.testing.assert_allclose(v, reference.params[k], rtol=1e-12, atol=1e-15)
    # nothing to train on at all: ValueError naming target, and no step taken
    model = classifier()
    before = model.state_dict()
    with pytest.raises(ValueError, match="target has nothing to train on"):
        train.fit(model, x[:, :4], y[:4], loss="cross_entropy", epochs=2)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_training_needs_a_reducing_loss(rng):
    x, y = toy_classes(rng, 6)
    model = classifier()
    for call in (
        lambda loss: train.fit(model, x, y, loss=loss, epochs=1),
        lambda loss: train.tbptt(nn.Sequential(numrnn.GRU(3, 4, dtype=np.float64, seed=0), nn.Linear(4, 3, dtype=np.float64, seed=1)),
                                 x, np.zeros((5, 6), int), k=2, loss=loss, optimizer=SGD()),
        lambda loss: train.make_closure(model, loss, x, y),
        lambda loss: train.fit_lbfgs(model, x, y, loss=loss),
    ):
        with pytest.raises(ValueError, match="loss must reduce to a number"):
            call(CrossEntropyLoss(reduction="none"))


def test_gradcheck_a_classifier_with_integer_targets(rng):
    x, y = toy_classes(rng, 5, steps=4)
    y = y.astype(np.uint8)
    y[2] = 255
    model = classifier(hidden=4)
    closure = train.make_closure(model, CrossEntropyLoss(ignore_index=255, label_smoothing=0.1, weight=[1.0, 2.0, 0.5]), x, y)
    assert max(train.gradcheck(closure, model.params, rtol=1e-6, atol=1e-9).values()) < 1e-7


def test_lbfgs_fits_a_classifier(rng):
    x, y = toy_classes(rng, 40)
    result = train.fit_lbfgs(classifier(), x, y, loss="cross_entropy", maxiter=30)
    assert result.fun < 0.1


# ---------------------------------------------------------------------------------- language model


def lm_data(vocab=5, steps=60, batch=2):
    """A periodic token stream (period 10) with two streams out of phase; the next token depends on
    the last two, so the model has to remember."""
    period = np.array([0, 1, 2, 3, 4, 2, 1, 0, 3, 4])
    stream = np.tile(period, steps // 10 + 2)
    tokens = np.stack([stream[: steps + 1], stream[3 : steps + 4]], axis=1)[:, :batch]
    return np.eye(vocab)[tokens[:-1]], tokens[1:]  # one-hot inputs (T, B, V), next tokens (T, B)


def language_model(vocab=5, hidden=16):
    return nn.Sequential(numrnn.LSTM(vocab, hidden, dtype=np.float64, seed=0), nn.Linear(hidden, vocab, dtype=np.float64, seed=1))


def test_tbptt_trains_a_language_model():
    x, tokens = lm_data()
    assert tokens.dtype.kind == "i"
    model, opt = language_model(), Adam(lr=0.05)
    losses = [train.tbptt(model, x, tokens, k=10, loss="cross_entropy", optimizer=opt)[0] for _ in range(12)]
    assert losses[0] > 1.0 and losses[-1] < 0.05 * losses[0], losses
    # run over the stream in eval: it predicts the next token
    predicted = model(x).argmax(axis=-1)
    assert np.mean(predicted[5:] == tokens[5:]) > 0.95


def test_tbptt_slices_integer_targets_by_chunk():
    x, tokens = lm_data(steps=23)
    tokens = tokens.astype(np.int32)
    loss = RecordingLoss()
    train.tbptt(language_model(), x, tokens, k=5, loss=loss, optimizer=SGD(lr=0.01))
    assert len(loss.seen) == 5
    for j, seen in enumerate(loss.seen):
        assert seen.dtype == np.int32
        np.testing.assert_array_equal(seen, tokens[5 * j : 5 * j + 5])


def test_tbptt_mean_is_the_sequence_as_one_batch_and_skips_ignored_chunks():
    x, tokens = lm_data(steps=23)
    tokens = tokens.copy()
    tokens[5:10] = -100  # the second chunk is all padding
    tokens[0, 1] = -100
    loss = CrossEntropyLoss(label_smoothing=0.05)
    reference = language_model()
    expected = loss(reference(x), tokens)[0]
    mean, states = train.tbptt(language_model(), x, tokens, k=5, loss=loss, optimizer=SGD(lr=1e-300))
    assert mean == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(states[0][0], reference.states[0][0], rtol=1e-12)  # the state crossed the skipped chunk
    # the all-ignored chunk takes no step
    model = language_model()
    before = model.state_dict()
    mean, _ = train.tbptt(model, x[5:10], tokens[5:10], k=5, loss=loss, optimizer=Adam(lr=0.1))
    assert math.isnan(mean)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # "sum": the sum over the sequence
    total, _ = train.tbptt(language_model(), x, tokens, k=5, loss=CrossEntropyLoss(reduction="sum"), optimizer=SGD(lr=1e-300))
    assert total == pytest.approx(CrossEntropyLoss(reduction="sum")(reference(x), tokens)[0], rel=1e-12)
