"""Benchmarks for `make bench`: ratios measured within one run, never thresholds."""
