"""Benchmarks of the recurrent layers ``numrnn.RNN`` / ``LSTM`` / ``GRU``.

Each ``setup`` builds the layer and its inputs and runs every timed operation once,
so Numba's compile (or cache load) time is never part of a measurement.
"""

from .common import BACKENDS, CELLS, DEFAULT_SIZES, SIZES, make_layer, random_array, require_backend, synchronize


class LayerSuite:
    """Forward, training step (forward + backward) and its peak memory, per cell, backend and size."""

    params = (CELLS, BACKENDS, DEFAULT_SIZES)
    param_names = ["cell", "backend", "size"]

    def setup(self, cell, backend, size):
        require_backend(backend)
        steps, batch, input_size, hidden_size = SIZES[size]
        self.backend = backend
        self.layer = make_layer(cell, input_size, hidden_size, backend)
        self.x = random_array((steps, batch, input_size), seed=1)
        self.dy = random_array((steps, batch, hidden_size), seed=2)
        # Compile (or load from the cache) everything the timed methods run.
        self.time_train_step(cell, backend, size)

    def time_forward(self, cell, backend, size):
        self.layer.forward(self.x)
        synchronize(self.backend)

    def time_train_step(self, cell, backend, size):
        self.layer.zero_grad()
        self.layer.forward(self.x)
        self.layer.backward(self.dy)
        synchronize(self.backend)

    def peakmem_train_step(self, cell, backend, size):
        # asv reports the peak resident memory of the whole benchmark process.
        self.time_train_step(cell, backend, size)


class StepSuite:
    """Streaming inference, ``layer.step`` with one sequence (B=1), per cell, backend and size."""

    params = (CELLS, BACKENDS, DEFAULT_SIZES)
    param_names = ["cell", "backend", "size"]

    def setup(self, cell, backend, size):
        require_backend(backend)
        _, _, input_size, hidden_size = SIZES[size]
        self.backend = backend
        self.layer = make_layer(cell, input_size, hidden_size, backend).eval()
        self.x_t = random_array((1, input_size), seed=1)
        _, self.state = self.layer.step(self.x_t)
        self.time_step(cell, backend, size)

    def time_step(self, cell, backend, size):
        _, self.state = self.layer.step(self.x_t, self.state)
        synchronize(self.backend)
