r"""Elman (vanilla) RNN cell, as ``torch.nn.RNN``.

Equations, for one timestep with input :math:`x_t` and previous state :math:`h_{t-1}`:

.. math::

    h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
    \qquad \phi \in \{\tanh, \mathrm{relu}\}

Weights: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih`` (H,), ``bias_hh`` (H,).

Backward, with :math:`\delta h_t` the total gradient reaching :math:`h_t`:
:math:`\delta a_t = \delta h_t \, \phi'(a_t)`, computed from the saved output.
"""

from numrnn.cells.activations import relu, relu_grad, tanh, tanh_grad

GATES = 1


def tanh_forward(pre):
    """New state from the pre-activation: ``tanh(pre)``."""
    return tanh(pre)


def tanh_backward(dh, h):
    """Gradient of the pre-activation given ``dh`` and the output ``h``."""
    return dh * tanh_grad(h)


def relu_forward(pre):
    """New state from the pre-activation: ``relu(pre)``."""
    return relu(pre)


def relu_backward(dh, h):
    """Gradient of the pre-activation given ``dh`` and the output ``h``."""
    return dh * relu_grad(h)
