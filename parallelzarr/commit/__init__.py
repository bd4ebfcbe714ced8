"""Commit: lease, journal, publish-last, roll-forward and repair; what makes a write all-or-nothing."""
