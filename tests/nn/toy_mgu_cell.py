r"""A toy cell family, written the way :mod:`numrnn.cells` writes one: a minimal gated unit
(Zhou et al., 2016) in the reset-after form, for ``tests/nn/test_new_cell_family.py``.

.. math::

    f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
    n_t &= \tanh(W_{in} x_t + b_{in} + f_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
    h_t &= (1 - f_t) \odot h_{t-1} + f_t \odot n_t

Weights: ``weight_ih`` (2H, I), ``weight_hh`` (2H, H), ``bias_ih`` / ``bias_hh`` (2H,), gate
order (f, n).
"""

from numrnn.cells.activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad

GATES = 2


def forward(a_forget, a_candidate_x, a_candidate_h, h_prev):
    """``(forget_gate, candidate, h)`` from the pre-activations (x side and h side)."""
    forget_gate = sigmoid(a_forget)
    candidate = tanh(a_candidate_x + forget_gate * a_candidate_h)
    return forget_gate, candidate, h_prev + forget_gate * (candidate - h_prev)


def backward(dh, forget_gate, candidate, a_candidate_h, h_prev):
    """Backward of :func:`forward` for one unit, ``dh`` the total gradient reaching ``h``.

    Returns ``(d_a_forget, d_a_candidate_x, d_a_candidate_h, d_h_prev_direct)``.
    """
    d_a_candidate_x = dh * forget_gate * tanh_grad(candidate)
    d_forget_gate = dh * (candidate - h_prev) + d_a_candidate_x * a_candidate_h
    return (
        d_forget_gate * sigmoid_grad(forget_gate),
        d_a_candidate_x,
        d_a_candidate_x * forget_gate,
        dh * (ONE - forget_gate),
    )
