"""Inputs: validated facts about what the user passed (arguments, Datasets, arrays, files); metadata reads only."""
