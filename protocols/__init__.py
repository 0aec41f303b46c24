"""Datasets, degradations, reference policies, metrics and the frozen protocol specs."""
