"""Entry points: ``to_zarr``, ``append``, ``rechunk``, ``repair``, job-array parts and the ``.pz`` accessor."""
