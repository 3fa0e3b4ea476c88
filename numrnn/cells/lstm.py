r"""Long short-term memory cell, as ``torch.nn.LSTM`` (gate order i, f, g, o).

Equations, with :math:`a = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}` split into
four blocks of size H in the order (input, forget, cell, output):

.. math::

    i_t &= \sigma(a_i), \quad f_t = \sigma(a_f), \quad g_t = \tanh(a_g), \quad o_t = \sigma(a_o) \\
    c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
    h_t &= o_t \odot \tanh(c_t)

Weights: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` (4H,), ``bias_hh`` (4H,).

Backward, with :math:`\delta h, \delta c` the gradients reaching :math:`h_t, c_t` from above
and from step t+1:

.. math::

    \delta c_t &= \delta c + \delta h \, o_t (1 - \tanh^2 c_t) \\
    \delta a_o &= \delta h \tanh(c_t)\, o_t (1 - o_t), \quad
    \delta a_i = \delta c_t\, g_t\, i_t (1 - i_t) \\
    \delta a_f &= \delta c_t\, c_{t-1} f_t (1 - f_t), \quad
    \delta a_g = \delta c_t\, i_t (1 - g_t^2), \quad
    \delta c_{t-1} = \delta c_t f_t
"""

from numrnn.cells.activations import sigmoid, sigmoid_grad, tanh, tanh_grad

GATES = 4


def forward(a_input, a_forget, a_cell, a_output, c_prev):
    """One LSTM unit: pre-activations and previous cell value to gates and new state.

    Returns ``(input_gate, forget_gate, cell_gate, output_gate, c, h)``.
    """
    input_gate = sigmoid(a_input)
    forget_gate = sigmoid(a_forget)
    cell_gate = tanh(a_cell)
    output_gate = sigmoid(a_output)
    c = forget_gate * c_prev + input_gate * cell_gate
    h = output_gate * tanh(c)
    return input_gate, forget_gate, cell_gate, output_gate, c, h


def backward(dh, dc, input_gate, forget_gate, cell_gate, output_gate, c, c_prev):
    """Backward of :func:`forward` for one unit.

    ``dh`` and ``dc`` are the total gradients reaching ``h`` and ``c``.  Returns
    ``(d_a_input, d_a_forget, d_a_cell, d_a_output, d_c_prev)``.
    """
    tanh_c = tanh(c)
    dc_total = dc + dh * output_gate * tanh_grad(tanh_c)
    d_a_output = dh * tanh_c * sigmoid_grad(output_gate)
    d_a_input = dc_total * cell_gate * sigmoid_grad(input_gate)
    d_a_forget = dc_total * c_prev * sigmoid_grad(forget_gate)
    d_a_cell = dc_total * input_gate * tanh_grad(cell_gate)
    return d_a_input, d_a_forget, d_a_cell, d_a_output, dc_total * forget_gate
