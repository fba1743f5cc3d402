"""Benchmarks for `make bench` (DESIGN §11): ratios measured within one run, never thresholds."""
