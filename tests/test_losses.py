"""Losses: values against hand formulas and PyTorch, gradients against central differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numrnn.losses import LOSSES, GaussianNLLLoss, HuberLoss, Loss, MAELoss, MSELoss, get_loss


def numerical_grad(loss, pred, target, eps=1e-6):
    grad = np.zeros_like(pred)
    flat, gflat = pred.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        plus = loss(pred, target)[0]
        flat[j] = old - eps
        minus = loss(pred, target)[0]
        flat[j] = old
        gflat[j] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_matches_central_differences(name, rng):
    loss = get_loss(name)
    pred = rng.normal(size=(4, 6))
    target = rng.normal(size=(4, 6 // loss.outputs_per_target))
    value, grad = loss(pred, target)
    assert isinstance(value, float)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    np.testing.assert_allclose(grad, numerical_grad(loss, pred, target), rtol=1e-6, atol=1e-9)


def test_values_by_hand():
    pred, target = np.array([1.0, -2.0, 0.5]), np.array([0.0, 0.0, 0.0])
    assert MSELoss()(pred, target)[0] == pytest.approx((1 + 4 + 0.25) / 3)
    assert MAELoss()(pred, target)[0] == pytest.approx(3.5 / 3)
    # Huber, delta 1: 0.5*0.25 for the small one, 1*(|d| - 0.5) for the others
    assert HuberLoss(1.0)(pred, target)[0] == pytest.approx((0.5 + 1.5 + 0.125) / 3)
    mean_logvar = np.array([[1.0, math.log(4.0)]])
    value = GaussianNLLLoss()(mean_logvar, np.array([[3.0]]))[0]
    assert value == pytest.approx(0.5 * (math.log(4.0) + 4.0 / 4.0))
    full = GaussianNLLLoss(full=True)(mean_logvar, np.array([[3.0]]))[0]
    assert full == pytest.approx(value + 0.5 * math.log(2 * math.pi))


def test_mae_gradient_is_zero_at_zero_difference():
    assert np.all(MAELoss()(np.ones(3), np.ones(3))[1] == 0)


def test_float32_keeps_dtype():
    pred = np.ones((2, 4), dtype=np.float32)
    for name in LOSSES:
        assert get_loss(name)(pred, np.zeros((2, 4 // get_loss(name).outputs_per_target)))[1].dtype == np.float32


def test_gaussian_extreme_log_variance_is_finite():
    pred = np.array([[0.0, 0.0, -1e4, 1e4]])
    with np.errstate(all="raise"):
        value, grad = GaussianNLLLoss()(pred, np.array([[1.0, 1.0]]))
    assert math.isfinite(value) and np.all(np.isfinite(grad))


def test_torch_parity(rng):
    torch = pytest.importorskip("torch")
    pred, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    tp, tt = torch.tensor(pred, requires_grad=True), torch.tensor(target)
    cases = [
        (MSELoss(), torch.nn.MSELoss()),
        (MAELoss(), torch.nn.L1Loss()),
        (HuberLoss(0.7), torch.nn.HuberLoss(delta=0.7)),
    ]
    for ours, theirs in cases:
        tp.grad = None
        out = theirs(tp, tt)
        out.backward()
        value, grad = ours(pred, target)
        assert value == pytest.approx(out.item(), rel=1e-12)
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-12)
    # Gaussian NLL: torch takes a variance; ours a log-variance
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    value, _ = GaussianNLLLoss()(np.concatenate([mean, log_var], axis=1), target)
    ref = torch.nn.GaussianNLLLoss(eps=1e-300)(torch.tensor(mean), tt, torch.tensor(np.exp(log_var)))
    assert value == pytest.approx(ref.item(), rel=1e-12)


def test_get_loss():
    assert isinstance(get_loss("MSE"), MSELoss)
    assert get_loss("huber", delta=2.0).delta == 2.0
    loss = MAELoss()
    assert get_loss(loss) is loss
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("hinge")
    with pytest.raises(TypeError, match="loss must be a name"):
        get_loss(3)
    with pytest.raises(TypeError, match="only accepted with a loss name"):
        get_loss(loss, delta=1.0)


@pytest.mark.parametrize(
    "pred, target, exc, match",
    [
        (np.ones(3), np.ones(2), ValueError, "target must have shape"),
        (np.ones(3), np.array([1.0, np.nan, 1.0]), ValueError, "target contains NaN"),
        (np.array([np.inf, 1.0, 1.0]), np.ones(3), ValueError, "pred contains NaN"),
        (np.array(["a", "b"]), np.ones(2), TypeError, "pred must be a real numeric array"),
        (None, np.ones(2), TypeError, "pred must be a real numeric array"),
        (np.ones(0), np.ones(0), ValueError, "must not be empty"),
    ],
)
def test_bad_input(pred, target, exc, match):
    with pytest.raises(exc, match=match):
        MSELoss()(pred, target)


def test_gaussian_needs_even_outputs():
    with pytest.raises(ValueError, match="divisible by 2"):
        GaussianNLLLoss()(np.ones((2, 3)), np.ones((2, 1)))


@pytest.mark.parametrize("delta, exc", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError), ("1", TypeError)])
def test_huber_bad_delta(delta, exc):
    with pytest.raises(exc, match="delta"):
        HuberLoss(delta)


# ---------------------------------------------------------------------------------- classification

from numrnn.losses import (  # noqa: E402
    CLASSIFICATION_LOSSES,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    NLLLoss,
    log_softmax,
    softmax,
)

C, N = 7, 5
# (pred shape, class_axis): numrnn's (N, C) and (T, B, C) with classes last, PyTorch's (N, C, d1)
# and (N, C, d1, d2) with class_axis=1, a single sample (C,), and a middle axis given as negative
LAYOUTS = [((N, C), -1), ((4, 3, C), -1), ((N, C, 3), 1), ((3, C, 2, 2), 1), ((C,), -1), ((4, C, 3), -2)]


def index_shape(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


def class_targets(rng, shape, axis, ignore_index=-100):
    target = rng.integers(0, shape[axis], size=index_shape(shape, axis))
    if target.ndim:
        target.flat[0] = ignore_index  # one ignored entry
    return target


def prob_targets(rng, shape, axis):
    probs = rng.dirichlet(np.ones(shape[axis]), size=index_shape(shape, axis))
    return np.moveaxis(probs, -1, axis % len(shape))


def summed(loss):
    """The scalar a finite difference can differentiate: the value, or the sum for "none"."""
    return lambda pred, target: (float(np.sum(loss(pred, target)[0])), None)


def torch_layout(torch, tensor, axis):
    """Move the class axis where PyTorch wants it (1, or 0 for a single sample)."""
    return torch.movedim(tensor, axis, 1 if tensor.ndim > 1 else 0)


def torch_value_grad(torch, fn, pred, axis=None):
    tp = torch.tensor(pred, requires_grad=True)
    out = fn(tp if axis is None else torch_layout(torch, tp, axis))
    out.sum().backward()
    # with reduction "none" torch's values have the class-index target's shape, as ours do
    return out.detach().numpy(), tp.grad.numpy()


def assert_rel(actual, expected, rtol=1e-12):
    """1e-12 relative to each value and to the array's scale (helpers.assert_rel_close), so a
    gradient entry that is a near-cancelling difference is not held to an impossible tolerance."""
    from helpers import assert_rel_close

    assert_rel_close(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol)


@pytest.mark.torch
@pytest.mark.parametrize("shape, axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_indices_match_torch(shape, axis, reduction, label_smoothing, weighted, rng):
    torch = pytest.importorskip("torch")
    pred = 3.0 * rng.normal(size=shape)
    target = class_targets(rng, shape, axis)
    weight = rng.uniform(0.2, 2.0, size=shape[axis]) if weighted else None
    loss = CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=label_smoothing, class_axis=axis)
    value, grad = loss(pred, target)
    ref_value, ref_grad = torch_value_grad(
        torch,
        lambda tp: torch.nn.functional.cross_entropy(
            tp, torch.tensor(target), weight=None if weight is None else torch.tensor(weight),
            reduction=reduction, label_smoothing=label_smoothing,
        ),
        pred, axis,
    )
    assert isinstance(value, float) if reduction != "none" else value.shape == target.shape
    assert grad.shape == pred.shape and grad.dtype == pred.dtype and grad.flags.c_contiguous
    assert_rel(value, ref_value)
    assert_rel(grad, ref_grad)


@pytest.mark.torch
@pytest.mark.parametrize("shape, axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probabilities_match_torch(shape, axis, reduction, label_smoothing, weighted, rng):
    torch = pytest.importorskip("torch")
    pred = 3.0 * rng.normal(size=shape)
    target = prob_targets(rng, shape, axis)
    weight = rng.uniform(0.2, 2.0, size=shape[axis]) if weighted else None
    loss = CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=label_smoothing, class_axis=axis)
    value, grad = loss(pred, target)
    ref_value, ref_grad = torch_value_grad(
        torch,
        lambda tp: torch.nn.functional.cross_entropy(
            tp, torch_layout(torch, torch.tensor(target), axis), weight=None if weight is None else torch.tensor(weight),
            reduction=reduction, label_smoothing=label_smoothing,
        ),
        pred, axis,
    )
    assert_rel(value, ref_value)
    assert_rel(grad, ref_grad)


@pytest.mark.torch
@pytest.mark.parametrize("shape, axis", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_matches_torch(shape, axis, reduction, weighted, rng):
    torch = pytest.importorskip("torch")
    pred = log_softmax(3.0 * rng.normal(size=shape), axis=axis)
    target = class_targets(rng, shape, axis)
    weight = rng.uniform(0.2, 2.0, size=shape[axis]) if weighted else None
    value, grad = NLLLoss(weight=weight, reduction=reduction, class_axis=axis)(pred, target)
    ref_value, ref_grad = torch_value_grad(
        torch,
        lambda tp: torch.nn.functional.nll_loss(
            tp, torch.tensor(target), weight=None if weight is None else torch.tensor(weight), reduction=reduction
        ),
        pred, axis,
    )
    assert_rel(value, ref_value)
    assert_rel(grad, ref_grad)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(N, C), (4, 3, C), (C,)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", ["none", "weight", "pos_weight", "both"])
def test_bce_with_logits_matches_torch(shape, reduction, weights, rng):
    torch = pytest.importorskip("torch")
    pred = 4.0 * rng.normal(size=shape)
    target = rng.integers(0, 2, size=shape).astype(np.float64)
    target.flat[0] = 0.3  # a soft target
    weight = rng.uniform(0.2, 2.0, size=shape[-1:]) if weights in ("weight", "both") else None
    pos_weight = rng.uniform(0.5, 3.0, size=shape[-1:]) if weights in ("pos_weight", "both") else None
    value, grad = BCEWithLogitsLoss(weight=weight, reduction=reduction, pos_weight=pos_weight)(pred, target)
    ref = torch.nn.BCEWithLogitsLoss(
        weight=None if weight is None else torch.tensor(weight), reduction=reduction,
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight),
    )
    ref_value, ref_grad = torch_value_grad(torch, lambda tp: ref(tp, torch.tensor(target)), pred)
    assert_rel(value, ref_value)
    assert_rel(grad, ref_grad)


@pytest.mark.torch
def test_all_ignored_matches_torch(rng):
    torch = pytest.importorskip("torch")
    pred = rng.normal(size=(N, C))
    target = np.full(N, -100)
    for reduction in ("mean", "sum", "none"):
        for ls in (0.0, 0.2):
            value, grad = CrossEntropyLoss(reduction=reduction, label_smoothing=ls)(pred, target)
            ref_value, ref_grad = torch_value_grad(
                torch, lambda tp: torch.nn.functional.cross_entropy(tp, torch.tensor(target), reduction=reduction,
                                                                    label_smoothing=ls), pred, -1)
            np.testing.assert_array_equal(value, ref_value)  # NaN for "mean", zeros otherwise
            np.testing.assert_array_equal(grad, ref_grad)


def test_all_ignored_is_nan_for_mean_and_zero_gradient():
    pred, target = np.zeros((3, C)), np.full(3, 5)
    for loss in (CrossEntropyLoss(ignore_index=5), NLLLoss(ignore_index=5), CrossEntropyLoss(ignore_index=5, label_smoothing=0.1)):
        value, grad, total = loss.evaluate(pred, target)
        assert math.isnan(value) and total == 0
        assert np.all(grad == 0)
        value, grad = type(loss)(ignore_index=5, reduction="sum")(pred, target)
        assert value == 0.0 and np.all(grad == 0)
    # every counted target weighted 0: NaN value, zero gradient (PyTorch's gradient is NaN here)
    weight = np.ones(C)
    weight[2] = 0.0
    value, grad = CrossEntropyLoss(weight=weight)(pred, np.full(3, 2))
    assert math.isnan(value) and np.all(grad == 0)


LOSS_CASES = [
    ("ce", dict()),
    ("ce", dict(reduction="sum", label_smoothing=0.2)),
    ("ce", dict(reduction="none", weight=np.linspace(0.5, 2.0, C), label_smoothing=0.1)),
    ("ce", dict(weight=np.linspace(0.5, 2.0, C), label_smoothing=0.3, ignore_index=3)),
    ("ce-prob", dict(weight=np.linspace(0.5, 2.0, C), label_smoothing=0.2)),
    ("ce-prob", dict(reduction="none")),
    ("nll", dict(weight=np.linspace(0.5, 2.0, C))),
    ("nll", dict(reduction="none")),
    ("bce", dict(pos_weight=np.linspace(0.5, 3.0, C))),
    ("bce", dict(reduction="sum", weight=np.linspace(0.5, 2.0, C))),
]


def make_case(kind, kwargs, rng, shape=(N, C), axis=-1):
    pred = 2.0 * rng.normal(size=shape)
    if kind == "ce":
        return CrossEntropyLoss(class_axis=axis, **kwargs), pred, class_targets(rng, shape, axis, kwargs.get("ignore_index", -100))
    if kind == "ce-prob":
        return CrossEntropyLoss(class_axis=axis, **kwargs), pred, prob_targets(rng, shape, axis)
    if kind == "nll":
        return NLLLoss(class_axis=axis, **kwargs), pred, class_targets(rng, shape, axis)
    target = rng.uniform(size=shape)
    return BCEWithLogitsLoss(**kwargs), pred, target


@pytest.mark.parametrize("kind, kwargs", LOSS_CASES)
@pytest.mark.parametrize("shape, axis", [((N, C), -1), ((2, 3, C), -1), ((3, C, 2), 1)])
def test_classification_gradients_match_central_differences(kind, kwargs, shape, axis, rng):
    if kind == "bce" and axis != -1:
        shape = shape[:1] + shape[2:] + shape[1:2]  # BCE has no class axis; weights broadcast over the last one
    loss, pred, target = make_case(kind, kwargs, rng, shape, axis)
    value, grad = loss(pred, target)
    assert grad.shape == pred.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, numerical_grad(summed(loss), pred, target), rtol=1e-6, atol=1e-9)


def test_cross_entropy_by_hand():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    target = np.array([1, 2])
    logp0 = logits[0] - np.log(np.exp(logits[0]).sum())
    expected = -(logp0[1] + np.log(1 / 3)) / 2
    value, grad = CrossEntropyLoss()(logits, target)
    assert value == pytest.approx(expected, rel=1e-14)
    p = softmax(logits)
    np.testing.assert_allclose(grad, (p - np.eye(3)[target]) / 2, rtol=1e-14)
    # weights: the mean divides by the weights of the targets, w1 + w2
    w = np.array([1.0, 3.0, 0.5])
    value = CrossEntropyLoss(weight=w)(logits, target)[0]
    assert value == pytest.approx(-(3.0 * logp0[1] + 0.5 * np.log(1 / 3)) / 3.5, rel=1e-14)
    # smoothing: (1 - e) * nll + e / C * sum_c (-log p_c), averaged
    e = 0.3
    smooth = (-(logp0.sum()) + -3 * np.log(1 / 3)) / 3
    value = CrossEntropyLoss(label_smoothing=e)(logits, target)[0]
    assert value == pytest.approx((1 - e) * expected + e * smooth / 2, rel=1e-14)
    # one-hot probabilities equal class indices
    onehot = np.eye(3)[target]
    for a, b in zip(CrossEntropyLoss()(logits, onehot), CrossEntropyLoss()(logits, target)):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_nll_of_log_softmax_equals_cross_entropy(rng):
    pred, target = rng.normal(size=(N, C)), class_targets(rng, (N, C), -1)
    w = rng.uniform(0.5, 2, size=C)
    ce_value, ce_grad = CrossEntropyLoss(weight=w)(pred, target)
    nll_value, _ = NLLLoss(weight=w)(log_softmax(pred), target)
    assert nll_value == pytest.approx(ce_value, rel=1e-13)
    # the gradient through log_softmax: g - softmax * sum(g)
    g = NLLLoss(weight=w)(log_softmax(pred), target)[1]
    np.testing.assert_allclose(g - softmax(pred) * g.sum(axis=-1, keepdims=True), ce_grad, rtol=1e-12, atol=1e-17)


def test_class_axis_layouts_agree(rng):
    """(T, B, C) with classes last equals PyTorch's (T, C, B) layout with class_axis=1."""
    pred = rng.normal(size=(6, 4, C))
    target = class_targets(rng, pred.shape, -1)
    last = CrossEntropyLoss(label_smoothing=0.1)(pred, target)
    torchlike = CrossEntropyLoss(label_smoothing=0.1, class_axis=1)(np.moveaxis(pred, -1, 1), target)
    assert last[0] == pytest.approx(torchlike[0], rel=1e-14)
    np.testing.assert_allclose(np.moveaxis(torchlike[1], 1, -1), last[1], rtol=1e-14)
    assert CrossEntropyLoss(class_axis=2).config()["class_axis"] == 2


def test_ignore_index_inside_the_classes(rng):
    pred = rng.normal(size=(N, C))
    target = np.array([0, 3, 3, 1, 6])
    value, grad = CrossEntropyLoss(ignore_index=3)(pred, target)
    keep = target != 3
    ref_value, ref_grad = CrossEntropyLoss()(pred[keep], target[keep])
    assert value == pytest.approx(ref_value, rel=1e-14)
    np.testing.assert_allclose(grad[keep], ref_grad, rtol=1e-14)
    assert np.all(grad[~keep] == 0)


@pytest.mark.parametrize(
    "dtype, ignore_index",
    [(np.int64, -100), (np.int32, -1), (np.int8, -100), (np.uint8, 255), (np.uint64, -100), (np.float64, -100), (np.float32, 9)],
)
def test_any_integer_dtype_and_integral_floats(dtype, ignore_index, rng):
    pred = rng.normal(size=(N, C))
    ints = np.array([0, 6, 2, 2, 5])
    ref_value, ref_grad = CrossEntropyLoss()(pred, ints)
    loss = CrossEntropyLoss(ignore_index=ignore_index)
    value, grad = loss(pred, ints.astype(dtype))
    assert value == ref_value and np.array_equal(grad, ref_grad)
    representable = np.dtype(dtype).kind == "f" or np.iinfo(dtype).min <= ignore_index <= np.iinfo(dtype).max
    if representable:  # (uint64 cannot hold -100: nothing of it is ignored)
        ignored = ints.astype(dtype)
        ignored[1] = ignore_index
        value, grad = loss(pred, ignored)
        keep = np.arange(N) != 1
        assert value == pytest.approx(CrossEntropyLoss()(pred[keep], ints[keep])[0], rel=1e-14)
        assert np.all(grad[1] == 0)


def test_float32_predictions_keep_their_dtype(rng):
    pred = rng.normal(size=(4, 3, C)).astype(np.float32)
    target = class_targets(rng, pred.shape, -1)
    ref = CrossEntropyLoss(label_smoothing=0.1, weight=np.linspace(1, 2, C))
    value32, grad32 = ref(pred, target)
    value64, grad64 = ref(pred.astype(np.float64), target)
    assert grad32.dtype == np.float32 and isinstance(value32, float)
    assert value32 == pytest.approx(value64, rel=1e-5)
    np.testing.assert_allclose(grad32, grad64, rtol=1e-4, atol=1e-6)
    for loss, t in ((NLLLoss(), target), (BCEWithLogitsLoss(pos_weight=np.ones(C)), np.ones(pred.shape)),
                    (CrossEntropyLoss(reduction="none"), target)):
        value, grad = loss(pred, t)
        assert grad.dtype == np.float32
    assert CrossEntropyLoss(reduction="none")(pred, target)[0].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite_and_quiet(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [-1e4, 1e4, -1e4]], dtype=dtype)
    with np.errstate(all="raise"):
        value, grad = CrossEntropyLoss(label_smoothing=0.1)(logits, np.array([0, 1, 1]))
        assert math.isfinite(value) and np.all(np.isfinite(grad)) and grad.dtype == dtype
        # confident and wrong: -log p = 2e4 for the middle sample, 0 for the first
        value = CrossEntropyLoss(reduction="none")(logits, np.array([0, 1, 1]))[0]
        np.testing.assert_allclose(value, [0.0, 2e4, 0.0], rtol=1e-6)
        for pos_weight in (None, np.array([2.0, 0.5, 1.0])):
            loss = BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
            value, grad = loss(logits, np.array([[1, 1, 0], [0, 1, 1], [0, 1, 0]]))
            assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and grad.dtype == dtype
        value, grad = BCEWithLogitsLoss(reduction="none")(np.array([1e4, -1e4, 1e4], dtype=dtype), np.array([0.0, 1.0, 1.0]))
        np.testing.assert_allclose(value, [1e4, 1e4, 0.0], rtol=1e-6)
        np.testing.assert_array_equal(grad, np.array([1.0, -1.0, 0.0], dtype=dtype))


def test_log_softmax_and_softmax(rng):
    x = rng.normal(size=(3, C)) * 50
    p = softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.log(p), log_softmax(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_softmax(x + 1e6), log_softmax(x), atol=1e-9)  # shift-invariant, no overflow
    assert log_softmax(x.astype(np.float32)).dtype == np.float32
    assert softmax(np.array([[1, 2]])).dtype == np.float64
    np.testing.assert_allclose(softmax(x, axis=0).sum(axis=0), 1.0, rtol=1e-14)


def test_reduction_none_shapes(rng):
    pred = rng.normal(size=(3, C, 4))
    target = class_targets(rng, pred.shape, 1)
    value, grad = CrossEntropyLoss(reduction="none", class_axis=1)(pred, target)
    assert value.shape == (3, 4) and value[np.unravel_index(0, (3, 4))] == 0.0  # the ignored entry
    assert value.sum() == pytest.approx(CrossEntropyLoss(reduction="sum", class_axis=1)(pred, target)[0], rel=1e-14)
    probs = prob_targets(rng, pred.shape, 1)
    assert CrossEntropyLoss(reduction="none", class_axis=1)(pred, probs)[0].shape == (3, 4)
    assert BCEWithLogitsLoss(reduction="none")(pred, np.ones(pred.shape))[0].shape == pred.shape


def test_evaluate_reports_the_total_weight(rng):
    pred = rng.normal(size=(N, C))
    target = np.array([0, 1, -100, 1, 6])
    w = np.arange(1.0, C + 1)
    value, grad, total = CrossEntropyLoss(weight=w).evaluate(pred, target)
    assert total == 1 + 2 + 2 + 7
    value_sum, _, _ = CrossEntropyLoss(weight=w, reduction="sum").evaluate(pred, target)
    assert value * total == pytest.approx(value_sum, rel=1e-14)
    assert CrossEntropyLoss().evaluate(pred, prob_targets(rng, pred.shape, -1))[2] == N
    assert BCEWithLogitsLoss().evaluate(pred, np.zeros(pred.shape))[2] == N * C
    assert MSELoss().evaluate(pred, np.zeros(pred.shape))[2] == N * C
    assert GaussianNLLLoss().evaluate(np.ones((N, 4)), np.zeros((N, 2)))[2] == 2 * N


def ce_bad_calls():
    pred = np.zeros((N, C))
    good = np.array([0, 1, 2, 3, 4])
    return [
        (CrossEntropyLoss(), pred, good.astype(float) + 0.5, ValueError, "target must hold integer class indices.*0.5"),
        (CrossEntropyLoss(), pred, good.astype(bool), TypeError, "target must hold integer class indices, got dtype bool"),
        (CrossEntropyLoss(), pred, np.array(["a"] * N), TypeError, "target must hold integer"),
        (CrossEntropyLoss(), pred, None, TypeError, "target"),
        (CrossEntropyLoss(), pred, np.array([0, 1, 7, 3, 4]), ValueError, r"target must hold class indices in \[0, 7\).*got 7"),
        (CrossEntropyLoss(), pred, np.array([0, 1, -1, 3, 4]), ValueError, "ignore_index=-100, got -1"),
        (CrossEntropyLoss(), pred, np.array([0.0, np.nan, 1, 1, 1]), ValueError, "target contains NaN"),
        (CrossEntropyLoss(), pred, good[:4], ValueError, r"target must have shape \(5,\) \(class indices\) or \(5, 7\)"),
        (CrossEntropyLoss(), pred, np.zeros((N, 6)), ValueError, "target must have shape"),
        (CrossEntropyLoss(), pred, np.ma.masked_array(good), TypeError, "target is a masked array"),
        (NLLLoss(), pred, np.eye(C)[good], ValueError, r"target must have shape \(5,\) \(class indices\) to match"),
        (CrossEntropyLoss(weight=np.ones(6)), pred, good, ValueError, "weight must have one entry per class"),
        (CrossEntropyLoss(class_axis=2), pred, good, ValueError, "class_axis must lie in"),
        (CrossEntropyLoss(), np.zeros(()), 0, ValueError, "pred must have a class axis"),
        (CrossEntropyLoss(), np.zeros((0, C)), np.zeros(0, int), ValueError, "must not be empty"),
        (CrossEntropyLoss(), np.full((N, C), np.inf), good, ValueError, "pred contains NaN or inf"),
        (CrossEntropyLoss(), np.array([["x"] * C] * N), good, TypeError, "pred must be a real numeric array"),
        (CrossEntropyLoss(), pred, np.full((N, C), np.nan), ValueError, "target contains NaN"),
        (BCEWithLogitsLoss(), pred, np.zeros((N, 3)), ValueError, "target must have shape"),
        (BCEWithLogitsLoss(weight=np.ones(3)), pred, np.zeros((N, C)), ValueError, "weight of shape .3,. must broadcast"),
        (BCEWithLogitsLoss(pos_weight=np.ones((2, C))), pred, np.zeros((N, C)), ValueError, "pos_weight of shape"),
    ]


@pytest.mark.parametrize("case", range(len(ce_bad_calls())))
def test_classification_bad_input_changes_nothing(case):
    loss, pred, target, exc, match = ce_bad_calls()[case]
    pred_before = np.array(pred, copy=True)
    target_before = None if target is None else np.array(target, copy=True)
    config = loss.config()
    with pytest.raises(exc, match=match):
        loss(pred, target)
    np.testing.assert_array_equal(pred, pred_before)
    if target is not None:
        np.testing.assert_array_equal(np.asarray(target), target_before)
    assert loss.config() == config


def test_successful_calls_do_not_touch_their_inputs(rng):
    weight = np.linspace(0.5, 2.0, C)
    loss = CrossEntropyLoss(weight=weight, label_smoothing=0.2)
    weight[0] = 100.0  # the loss keeps its own copy
    assert loss.weight[0] == 0.5 and not loss.weight.flags.writeable
    for kind, kwargs in LOSS_CASES:
        loss, pred, target = make_case(kind, kwargs, rng)
        p0, t0 = pred.copy(), target.copy()
        first = loss(pred, target)
        np.testing.assert_array_equal(pred, p0)
        np.testing.assert_array_equal(target, t0)
        second = loss(pred, target)
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: CrossEntropyLoss(reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: CrossEntropyLoss(reduction=None), TypeError, "reduction must be one of"),
        (lambda: CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing must be a float in"),
        (lambda: CrossEntropyLoss(label_smoothing="0.1"), TypeError, "label_smoothing"),
        (lambda: CrossEntropyLoss(ignore_index=1.0), TypeError, "ignore_index must be an int"),
        (lambda: CrossEntropyLoss(ignore_index=True), TypeError, "ignore_index must be an int"),
        (lambda: CrossEntropyLoss(class_axis="last"), TypeError, "class_axis must be an int"),
        (lambda: CrossEntropyLoss(weight=-np.ones(C)), ValueError, "weight must be >= 0"),
        (lambda: CrossEntropyLoss(weight=np.ones((2, C))), ValueError, "weight must be a 1-D array"),
        (lambda: CrossEntropyLoss(weight=[1.0, np.nan]), ValueError, "weight contains NaN"),
        (lambda: CrossEntropyLoss(weight="abc"), TypeError, "weight must be a real numeric array"),
        (lambda: NLLLoss(weight=np.ones(0)), ValueError, "weight must be a 1-D array"),
        (lambda: BCEWithLogitsLoss(pos_weight=-1.0), ValueError, "pos_weight must be >= 0"),
        (lambda: BCEWithLogitsLoss(reduction="mean ", weight=1.0), ValueError, "reduction"),
    ],
)
def test_classification_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_classification_get_loss_and_config():
    assert isinstance(get_loss("cross_entropy", label_smoothing=0.1), CrossEntropyLoss)
    assert isinstance(get_loss("NLL"), NLLLoss)
    assert isinstance(get_loss("bce_with_logits"), BCEWithLogitsLoss)
    assert set(CLASSIFICATION_LOSSES) == {"cross_entropy", "nll", "bce_with_logits"}
    assert not set(CLASSIFICATION_LOSSES) & set(LOSSES)  # LOSSES stays the regression set (Forecaster's choices)
    with pytest.raises(ValueError, match="cross_entropy"):
        get_loss("hinge")
    import json

    for loss in (
        CrossEntropyLoss(weight=[1.0, 2.0, 3.0], ignore_index=1, reduction="sum", label_smoothing=0.1, class_axis=1),
        NLLLoss(weight=[1.0, 2.0], reduction="none"),
        BCEWithLogitsLoss(weight=[[1.0, 2.0]], pos_weight=[3.0, 4.0]),
    ):
        cfg = json.loads(json.dumps(loss.config()))
        again = type(loss)(**cfg)
        assert again.config() == loss.config()
        assert repr(again) == repr(loss)


def test_a_subclass_returning_value_and_grad_still_works():
    class Twice(Loss):
        name = "twice"

        def _compute(self, pred, target):
            return float(2 * np.sum(pred - target)), np.full_like(pred, 2.0)

    value, grad, total = Twice().evaluate(np.ones((2, 3)), np.zeros((2, 3)))
    assert value == 12.0 and total == 6 and grad.shape == (2, 3)
