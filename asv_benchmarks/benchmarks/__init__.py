"""asv benchmarks of numrnn: layers (training step, forward, step() latency, peak memory), forecast
and global_forecast (fit time, peak memory, accuracy on a synthetic panel), accuracy (the default
Forecaster's MASE on the bundled series) and cold_start (import, first step and compile time in a
fresh interpreter)."""
