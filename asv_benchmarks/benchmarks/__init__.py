"""asv benchmarks of numrnn, one module per public module (layers, forecast)."""
