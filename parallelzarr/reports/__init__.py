"""Reports: plots, store inspection and progress; they depend on plans, never the reverse."""
