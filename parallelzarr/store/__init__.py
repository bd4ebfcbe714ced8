"""Store: every byte access (resolution, keys, chunk I/O, locks, task markers, zarr's private API)."""
