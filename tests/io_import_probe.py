"""A module that records its own import, for ``tests/test_io.py``: a crafted file naming a class in
it shows whether ``numrnn.io.load`` imported it.  :class:`Trap` records any call."""

CALLS = []


class Trap:
    """Not a numrnn Module."""

    def __init__(self, *args, **kwargs):
        CALLS.append((args, kwargs))
