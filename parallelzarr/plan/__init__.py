"""Plan: pure arithmetic on shapes, chunks and budgets; no I/O, no dask; plain frozen data."""
