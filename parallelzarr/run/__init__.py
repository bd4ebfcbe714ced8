"""Run: the planned job and the one runner that executes it (setup, graph, compute, commit, failure mapping)."""
