r"""Gated recurrent unit, as ``torch.nn.GRU`` (gate order r, z, n), in two forms.

With :math:`x`-side and :math:`h`-side pre-activations
:math:`a^x_k = W_{ik} x_t + b_{ik}` and, for the gates, :math:`a_k = a^x_k + W_{hk} h_{t-1} + b_{hk}`:

.. math::

    r_t &= \sigma(a_r), \qquad z_t = \sigma(a_z) \\
    n_t &= \tanh(a^x_n + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
        &&\text{reset_after=True (PyTorch, cuDNN)} \\
    n_t &= \tanh(a^x_n + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
        &&\text{reset_after=False (Cho et al., 2014)} \\
    h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

Both forms use the same parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
``bias_ih`` (3H,), ``bias_hh`` (3H,).

The pointwise math splits into the gates (:func:`gates`) and the candidate/update
(:func:`candidate_update`), because in the Cho form the recurrent product for the
candidate needs :math:`r_t` first.
"""

from numrnn.cells.activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad

GATES = 3


def gates(a_reset, a_update):
    """Reset and update gates from their pre-activations: ``(r, z)``."""
    return sigmoid(a_reset), sigmoid(a_update)


def candidate_update(a_candidate, update_gate, h_prev):
    """Candidate ``n = tanh(a_candidate)`` and new state ``h = (1 - z) n + z h_prev``.

    Returns ``(n, h)``.
    """
    candidate = tanh(a_candidate)
    return candidate, candidate + update_gate * (h_prev - candidate)


def candidate_update_backward(dh, update_gate, candidate, h_prev):
    """Backward of :func:`candidate_update`.

    Returns ``(d_a_candidate, d_update_gate, d_h_prev_direct)``, where the last is the
    gradient through the ``z * h_prev`` path only.
    """
    d_a_candidate = dh * (ONE - update_gate) * tanh_grad(candidate)
    return d_a_candidate, dh * (h_prev - candidate), dh * update_gate


def gates_backward(d_reset_gate, d_update_gate, reset_gate, update_gate):
    """Pre-activation gradients of the gates: ``(d_a_reset, d_a_update)``."""
    return d_reset_gate * sigmoid_grad(reset_gate), d_update_gate * sigmoid_grad(update_gate)
