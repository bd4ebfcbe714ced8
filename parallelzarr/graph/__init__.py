"""Graph: dask layers for planned writes and rechunks, built without touching the store."""
