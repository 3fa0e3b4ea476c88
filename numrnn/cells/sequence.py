"""Sequence conventions shared by every backend's drivers (compiled like the cell math)."""


def time_index(step, length, reverse):
    """Time index processed at ``step`` by a sequence of ``length``, or -1 when inactive.

    Sequence ``b`` is active at steps ``0 <= step < lengths[b]``; the forward direction
    processes ``t = step`` and the reverse direction ``t = length - 1 - step``, so each
    sequence's backward pass starts at its own end (``pack_padded_sequence`` semantics).
    """
    if step >= length:
        return -1
    return length - 1 - step if reverse else step
