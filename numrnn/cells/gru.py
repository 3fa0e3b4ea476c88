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
candidate needs :math:`r_t` first.  The reset terms of each form (:func:`candidate_reset_after`,
:func:`reset_hidden`, :func:`candidate_reset_before` and their backward functions) and
the bias folding (:func:`fold_biases`) are here too, so no backend writes them.

Bias folding: :math:`b_{hr}` and :math:`b_{hz}` enter :math:`a_r, a_z` the same way as
:math:`b_{ir}, b_{iz}`, so they are added into the input projection's bias
(:data:`FOLDED_GATES` blocks); :math:`b_{hn}` is kept apart, because in either form
it sits inside the reset term.

Recurrent gradient of the candidate rows (``weight_hh[2H:]``), with
:math:`\delta_n = \partial L / \partial a_n`:

.. math::

    \partial L / \partial W_{hn} &= \sum_t (r_t \odot \delta_n) h_{t-1}^T
        &&\text{reset_after=True} \\
    \partial L / \partial W_{hn} &= \sum_t \delta_n (r_t \odot h_{t-1})^T
        &&\text{reset_after=False}

which is why forward saves :math:`W_{hn} h_{t-1} + b_{hn}` (reset-after) or
:math:`r_t \odot h_{t-1}` (Cho form) next to the gates.
"""

from numrnn.cells.activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad

GATES = 3

#: Gate blocks (r, z) whose ``bias_hh`` rows fold into the input projection's bias.
FOLDED_GATES = 2


def fold_biases(b_ih, b_hh):
    """The input projection's bias and the candidate's recurrent bias.

    Parameters
    ----------
    b_ih, b_hh : ndarray (3H,)

    Returns
    -------
    bias : ndarray (3H,)
        ``b_ih + b_hh`` on the r, z rows, ``b_ih`` on the n rows.
    b_hn : ndarray (H,)
        ``b_hh[2H:]`` (a copy), added inside the reset term.
    """
    hidden = b_hh.shape[0] // GATES
    folded = FOLDED_GATES * hidden
    bias = b_ih.copy()
    bias[:folded] += b_hh[:folded]
    return bias, b_hh[folded:].copy()


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


def candidate_reset_after(a_x_candidate, reset_gate, h_candidate):
    """Candidate pre-activation, reset-after form: ``a_n = a^x_n + r * h_candidate``.

    ``h_candidate`` is ``W_hn h_prev + b_hn`` (saved by forward for backward).
    """
    return a_x_candidate + reset_gate * h_candidate


def candidate_reset_after_backward(d_a_candidate, reset_gate, h_candidate):
    """Backward of :func:`candidate_reset_after` in its last two arguments.

    Returns ``(d_reset_gate, d_h_candidate) = (d_a_n * h_candidate, d_a_n * r)``;
    ``d_h_candidate`` is the h-side pre-activation gradient of the n rows.
    """
    return d_a_candidate * h_candidate, d_a_candidate * reset_gate


def reset_hidden(reset_gate, h_prev):
    """Cho form: the reset state ``r * h_prev`` that ``W_hn`` multiplies."""
    return reset_gate * h_prev


def candidate_reset_before(a_x_candidate, w_reset_h, b_hn):
    """Candidate pre-activation, Cho form: ``a_n = a^x_n + W_hn (r * h_prev) + b_hn``.

    ``w_reset_h`` is the product ``W_hn (r * h_prev)`` of one unit.
    """
    return a_x_candidate + w_reset_h + b_hn


def reset_hidden_backward(d_reset_h, reset_gate, h_prev):
    """Backward of :func:`reset_hidden`, given ``d_reset_h = W_hn^T d_a_n``.

    Returns ``(d_reset_gate, d_h_prev_reset) = (d_reset_h * h_prev, d_reset_h * r)``;
    the latter adds to the direct gradient of :func:`candidate_update_backward`.
    """
    return d_reset_h * h_prev, d_reset_h * reset_gate
