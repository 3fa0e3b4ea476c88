"""GRU on the CPU, both forms (``variant`` = reset_after): forward, backward and step
kernels, and the layer calls :class:`~numrnn.backends.cpu.CPUBackend` makes.  The
algebra is :mod:`numrnn.cells.gru`'s."""

from __future__ import annotations

import numba
import numpy as np

from numrnn.backends.protocol import FamilyKernels
from numrnn._jit import cpu_function, cpu_kernel
from numrnn.backends.cpu import activations  # noqa: F401  (registers the float32 activations)
from numrnn.backends.cpu.linalg import column_sums, copy_block, input_gradient, matmul_nt_into, matmul_tn, project_inputs, step_product, step_projections, step_weights, weight_gradients, zero_padding
from numrnn.backends.cpu.threads import block_bounds, time_index
from numrnn.cells import gru as gru_cell


gru_gates = cpu_function(gru_cell.gates)
gru_candidate_update = cpu_function(gru_cell.candidate_update)
gru_candidate_update_backward = cpu_function(gru_cell.candidate_update_backward)
gru_gates_backward = cpu_function(gru_cell.gates_backward)
gru_fold_biases = cpu_function(gru_cell.fold_biases)
gru_candidate_reset_after = cpu_function(gru_cell.candidate_reset_after)
gru_candidate_reset_after_backward = cpu_function(gru_cell.candidate_reset_after_backward)
gru_reset_hidden = cpu_function(gru_cell.reset_hidden)
gru_candidate_reset_before = cpu_function(gru_cell.candidate_reset_before)
gru_reset_hidden_backward = cpu_function(gru_cell.reset_hidden_backward)


@cpu_function
def gru_gates_rows(s, lo, pre_x, pre_h, lengths, reverse, h, reset_h):
    """Reset and update gates of one GRU step for rows ``[lo, lo + len(h))``; ``reset_h = r * h``.

    The gates overwrite their pre-activations in ``pre_x`` (as in :func:`lstm_cell_rows`).
    """
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            r_g, z_g = gru_gates(pre_x[t, b, j] + pre_h[r, j], pre_x[t, b, hidden + j] + pre_h[r, hidden + j])
            pre_x[t, b, j] = r_g
            pre_x[t, b, hidden + j] = z_g
            reset_h[r, j] = gru_reset_hidden(r_g, h[r, j])


@cpu_function
def gru_update_rows(s, lo, pre_x, pre_h, pre_hn, b_hn, lengths, reverse, reset_after, h, reset_h, y, h_prev_seq, aux_seq):
    """Candidate and new state of one GRU step (after :func:`gru_gates_rows`); updates ``h``.

    Reads r, z from ``pre_x`` and overwrites the candidate's pre-activation with ``n``.

    ``reset_after``: the candidate's recurrent term is ``r * (pre_h[:, 2H:] + b_hn)``;
    Cho form: ``pre_hn + b_hn`` with ``pre_hn = (r * h) @ W_hn^T``.
    """
    hidden = h.shape[1]
    for r in range(h.shape[0]):
        b = lo + r
        t = time_index(s, lengths[b], reverse)
        if t < 0:
            continue
        for j in range(hidden):
            if reset_after:
                hn = pre_h[r, 2 * hidden + j] + b_hn[j]
                a_n = gru_candidate_reset_after(pre_x[t, b, 2 * hidden + j], pre_x[t, b, j], hn)
                aux_seq[t, b, j] = hn
            else:
                a_n = gru_candidate_reset_before(pre_x[t, b, 2 * hidden + j], pre_hn[r, j], b_hn[j])
                aux_seq[t, b, j] = reset_h[r, j]
            n_g, h_new = gru_candidate_update(a_n, pre_x[t, b, hidden + j], h[r, j])
            pre_x[t, b, 2 * hidden + j] = n_g
            h_prev_seq[t, b, j] = h[r, j]
            y[t, b, j] = h_new
            h[r, j] = h_new


@cpu_function
def gru_forward_rows(lo, hi, pre_x, lengths, reverse, reset_after, w_rec_t, w_hn_t, b_hn, h0, y, h_prev_seq, aux_seq, h_n):
    """Rows ``[lo, hi)`` of :func:`gru_forward` over the whole sequence."""
    rows = hi - lo
    hidden = h0.shape[1]
    h = h0[lo:hi].copy()
    pre_h = np.empty((rows, w_rec_t[0].shape[1]), dtype=h0.dtype)
    reset_h = np.zeros((rows, hidden), dtype=h0.dtype)
    pre_hn = np.zeros((rows, hidden), dtype=h0.dtype)
    for s in range(pre_x.shape[0]):
        step_product(h, w_rec_t, pre_h)
        gru_gates_rows(s, lo, pre_x, pre_h, lengths, reverse, h, reset_h)
        if not reset_after:
            step_product(reset_h, w_hn_t, pre_hn)
        gru_update_rows(s, lo, pre_x, pre_h, pre_hn, b_hn, lengths, reverse, reset_after, h, reset_h, y, h_prev_seq, aux_seq)
    copy_block(h, h_n, lo)


@cpu_kernel(parallel=True)
def gru_forward(gates, lengths, reverse, reset_after, w_hh, b_hn, h0, y, blocks, h_prev_seq, aux_seq):
    """GRU over a sequence, either form (see :mod:`numrnn.cells.gru`), from the input
    projection in ``gates`` (T, B, 3H) with the folded bias (made by
    :func:`project_inputs` before: see :func:`layer_forward`); ``b_hn`` (H,) is the
    candidate's recurrent bias.  Outputs go to ``y``.

    Returns ``h_n``.  Saved for backward, in caller-owned buffers: ``gates``, r, z, n
    (overwriting the projection in place); ``h_prev_seq`` and ``aux_seq`` (T, B, H),
    the latter ``W_hn h + b_hn`` (``reset_after``) or ``r * h_prev`` (Cho form),
    whichever backward needs.
    """
    batch = gates.shape[1]
    hidden = h0.shape[1]
    pre_x = gates
    # reset_after: one product for all three blocks; Cho form: r, z first, n after the reset
    w_rec_t = step_weights(np.ascontiguousarray(w_hh.T) if reset_after else np.ascontiguousarray(w_hh[: 2 * hidden].T))
    w_hn_t = step_weights(np.ascontiguousarray(w_hh[2 * hidden :].T))
    # h_prev_seq and aux_seq (Cho form) enter products on every row: zero their padding
    zero_padding(h_prev_seq, lengths)
    zero_padding(aux_seq, lengths)
    h_n = np.empty_like(h0)
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        gru_forward_rows(lo, hi, pre_x, lengths, reverse, reset_after, w_rec_t, w_hn_t, b_hn, h0, y, h_prev_seq, aux_seq, h_n)
    return h_n


@cpu_function
def gru_backward_rows(lo, hi, lengths, reverse, reset_after, w_rec, w_hn, dy, dh_n, gates, h_prev_seq, aux_seq, dh0):
    """Rows ``[lo, hi)`` of :func:`gru_backward` over the whole sequence.

    In place, as for the LSTM: the x-side pre-activation gradients (dA_r, dA_z, dA_n)
    overwrite the saved gates r, z, n; with ``reset_after`` the h-side gradient of
    the candidate, ``dA_n * r``, overwrites ``aux_seq`` (``W_hn h + b_hn``, read first).
    In the Cho form the h-side gradients equal the x-side ones.
    """
    steps = dy.shape[0]
    hidden = dh_n.shape[1]
    rows = hi - lo
    dtype = dh_n.dtype
    dh = dh_n[lo:hi].copy()
    dh_direct = np.zeros((rows, hidden), dtype=dtype)
    d_update = np.zeros((rows, hidden), dtype=dtype)
    d_candidate = np.zeros((rows, hidden), dtype=dtype)
    d_reset_h = np.zeros((rows, hidden), dtype=dtype)
    d_step = np.zeros((rows, w_rec[0].shape[0]), dtype=dtype)
    dh_rec = np.empty((rows, hidden), dtype=dtype)
    for s in range(steps - 1, -1, -1):
        for r in range(rows):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            for j in range(hidden):
                if t < 0:
                    d_candidate[r, j] = 0
                    continue
                d_a_n, d_z, d_h_direct = gru_candidate_update_backward(
                    dh[r, j] + dy[t, b, j], gates[t, b, hidden + j], gates[t, b, 2 * hidden + j], h_prev_seq[t, b, j]
                )
                d_candidate[r, j] = d_a_n
                d_update[r, j] = d_z
                dh_direct[r, j] = d_h_direct
        if not reset_after:
            step_product(d_candidate, w_hn, d_reset_h)
        for r in range(rows):
            b = lo + r
            t = time_index(s, lengths[b], reverse)
            if t < 0:
                d_step[r, :] = 0
                continue
            for j in range(hidden):
                r_g = gates[t, b, j]
                d_a_n = d_candidate[r, j]
                if reset_after:
                    d_r, d_h_candidate = gru_candidate_reset_after_backward(d_a_n, r_g, aux_seq[t, b, j])
                    aux_seq[t, b, j] = d_h_candidate
                    d_step[r, 2 * hidden + j] = d_h_candidate
                else:
                    d_r, d_h_reset = gru_reset_hidden_backward(d_reset_h[r, j], r_g, h_prev_seq[t, b, j])
                    dh_direct[r, j] += d_h_reset
                d_a_r, d_a_z = gru_gates_backward(d_r, d_update[r, j], r_g, gates[t, b, hidden + j])
                gates[t, b, j] = d_a_r
                gates[t, b, hidden + j] = d_a_z
                gates[t, b, 2 * hidden + j] = d_a_n
                d_step[r, j] = d_a_r
                d_step[r, hidden + j] = d_a_z
        step_product(d_step, w_rec, dh_rec)
        for r in range(rows):
            if s < lengths[lo + r]:
                for j in range(hidden):
                    dh[r, j] = dh_direct[r, j] + dh_rec[r, j]
    copy_block(dh, dh0, lo)


@cpu_kernel(parallel=True)
def gru_backward(gates, lengths, reverse, reset_after, w_hh, dy, dh_n, h_prev_seq, aux_seq, blocks):
    """Backward of :func:`gru_forward` through time; consumes ``gates`` and ``aux_seq``
    (see :func:`gru_backward_rows`), from which :func:`layer_backward` then takes
    ``dx`` and the weight gradients.  Returns ``dh0``.
    """
    batch = gates.shape[1]
    hidden = dh_n.shape[1]
    zero_padding(gates, lengths)  # padded rows enter the products below
    dh0 = np.empty_like(dh_n)
    w_rec = step_weights(w_hh.copy() if reset_after else np.ascontiguousarray(w_hh[: 2 * hidden]))
    w_hn = step_weights(np.ascontiguousarray(w_hh[2 * hidden :]))
    for block in numba.prange(blocks):
        lo, hi = block_bounds(block, blocks, batch)
        gru_backward_rows(lo, hi, lengths, reverse, reset_after, w_rec, w_hn, dy, dh_n, gates, h_prev_seq, aux_seq, dh0)
    return dh0


@cpu_kernel
def gru_step(x, reset_after, w_ih, w_hh, b_ih, b_hh, h0):
    """One GRU step (either form) for every row (B, I) -> new h (B, H); nothing saved."""
    hidden = h0.shape[1]
    bias, b_hn = gru_fold_biases(b_ih, b_hh)
    w_rec = w_hh if reset_after else w_hh[: 2 * hidden]
    pre_x, pre_h, lengths = step_projections(x, w_ih, w_rec, bias, h0)
    h = h0.copy()
    scratch = np.empty((1,) + h0.shape, dtype=h0.dtype)
    reset_h = np.empty_like(h0)
    pre_hn = np.empty_like(h0)
    gru_gates_rows(0, 0, pre_x, pre_h, lengths, False, h, reset_h)
    if not reset_after:
        matmul_nt_into(reset_h, w_hh[2 * hidden :], pre_hn)
    gru_update_rows(0, 0, pre_x, pre_h, pre_hn, b_hn, lengths, False, reset_after, h, reset_h, scratch, scratch, scratch)
    return h


# The products over all T*B rows are called from here, not from inside the drivers
# (a cold-start cost: see the note in numrnn.backends.cpu.lstm).


def layer_forward(variant, x, lengths, reverse, weights, state0, y, buffer, blocks):
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = w_hh.shape[1]
    buffers = gates, h_prev_seq, aux_seq = (buffer("gates", 3 * hidden), buffer("h_prev", hidden), buffer("aux", hidden))
    bias, b_hn = gru_cell.fold_biases(b_ih, b_hh)  # the cell's formula, on NumPy arrays
    project_inputs(x, w_ih, bias, gates)
    return (gru_forward(gates, lengths, reverse, variant, w_hh, b_hn, state0[0], y, blocks, h_prev_seq, aux_seq),), buffers


def layer_backward(variant, x, lengths, reverse, w_ih, w_hh, buffers, dy, dstate_n, blocks):
    gates, h_prev_seq, aux_seq = buffers
    dh0 = gru_backward(gates, lengths, reverse, variant, w_hh, dy, dstate_n[0], h_prev_seq, aux_seq, blocks)
    d_pre_x = gates  # dA now
    dx = input_gradient(d_pre_x, w_ih)
    d_w_ih, d_w_hh, d_b_ih, d_b_hh = weight_gradients(x, h_prev_seq, d_pre_x)
    steps, batch, hidden = aux_seq.shape
    rows = steps * batch
    aux_rows = aux_seq.reshape(rows, hidden)
    if variant:  # reset_after
        # the n rows of the h side: gradient dA_n * r (now in aux_seq) against h_prev
        d_w_hh[2 * hidden :] = matmul_tn(aux_rows, h_prev_seq.reshape(rows, hidden))
        d_b_hh[2 * hidden :] = column_sums(aux_rows)
    else:
        # Cho form: the n rows of W_hh multiply r * h_prev (saved in aux_seq), not h_prev
        d_n_rows = np.ascontiguousarray(d_pre_x[:, :, 2 * hidden :]).reshape(rows, hidden)
        d_w_hh[2 * hidden :] = matmul_tn(d_n_rows, aux_rows)
    return dx, (dh0,), (d_w_ih, d_w_hh, d_b_ih, d_b_hh)


def layer_step(variant, x, weights, state0):
    return (gru_step(x, variant, *weights, state0[0]),)


#: This family's calls, found by :class:`~numrnn.backends.cpu.CPUBackend` through the registry.
KERNELS = FamilyKernels(layer_forward, layer_backward, layer_step)
