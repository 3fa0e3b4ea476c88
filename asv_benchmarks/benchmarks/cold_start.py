"""Cold start, each sample in a fresh interpreter (asv's ``timeraw_`` benchmarks).

What a new process costs before its first useful call:

* ``ImportSuite.timeraw_import``: ``import numrnn``;
* ``ColdStartSuite.timeraw_first_train_step``: import, build a layer and run one training step
  (forward + backward, float32, the ``small`` size) with the kernels loaded from Numba's disk
  cache, as every process after the first one does (``setup`` fills the cache);
* ``ColdStartSuite.timeraw_compile_train_step``: the same with caching off
  (``NUMRNN_NO_CACHE=1``), so Numba compiles every kernel the step runs: what the first run
  after an install cost before the NumPy first-use tier, and what ``NUMRNN_FIRST_USE=compile``
  costs;
* ``ColdStartSuite.timeraw_fresh_install_train_step``: the same on an empty cache in the
  default first-use mode (:mod:`numrnn.backends.cpu.first_use`): the NumPy kernels answer, and
  the background compile they start is stopped when the step is done, so that it does not
  run into the next sample.

The statement a ``timeraw_`` method returns is run by asv in a new ``python`` process and timed
there; the child's setup string (not timed) only sets the environment before numba is imported.
"""

from .common import CELLS, SIZES

_TRAIN_STEP = """
import numpy as np
import numrnn
layer = numrnn.{cls}({input_size}, {hidden_size}, dtype=np.float32, backend="cpu", seed=0)
x = np.random.default_rng(1).standard_normal(({steps}, {batch}, {input_size})).astype(np.float32)
y, _ = layer(x)
layer.backward(np.ones_like(y))
"""

_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _train_step_code(cell, size="small"):
    steps, batch, input_size, hidden_size = SIZES[size]
    return _TRAIN_STEP.format(cls=_CLASSES[cell], input_size=input_size, hidden_size=hidden_size,
                              steps=steps, batch=batch)


_STOP_BACKGROUND = """
from numrnn.backends.cpu import first_use
for process in first_use._launched.values():
    if process:
        process.kill()
"""


def _environment(no_cache, first_use="compile"):
    lines = ["import os", "os.environ['NUMRNN_BACKEND'] = 'cpu'", f"os.environ['NUMRNN_FIRST_USE'] = {first_use!r}"]
    if no_cache:
        lines.append("os.environ['NUMRNN_NO_CACHE'] = '1'")
    if first_use == "background":  # an empty cache of its own per sample
        lines += ["import tempfile", "os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(prefix='numrnn-asv-cold-')"]
    return "\n".join(lines)


class ImportSuite:
    """``import numrnn`` in a fresh interpreter."""

    number = 1
    repeat = (3, 10, 30.0)
    timeout = 120

    def timeraw_import(self):
        return "import numrnn", _environment(no_cache=False)


class ColdStartSuite:
    """A fresh interpreter's first training step: from Numba's cache, and compiled from nothing."""

    params = CELLS
    param_names = ["cell"]
    number = 1
    # A compile takes tens of seconds: one to three samples.
    repeat = (1, 3, 120.0)
    warmup_time = 0.0
    timeout = 900

    def setup(self, cell):
        # Fill Numba's disk cache (once; later calls load it), so the cached case measures loading.
        namespace = {}
        exec(_train_step_code(cell), namespace)

    def timeraw_first_train_step(self, cell):
        return _train_step_code(cell), _environment(no_cache=False)

    def timeraw_compile_train_step(self, cell):
        return _train_step_code(cell), _environment(no_cache=True)

    def timeraw_fresh_install_train_step(self, cell):
        return _train_step_code(cell) + _STOP_BACKGROUND, _environment(no_cache=False, first_use="background")
