"""Benchmarks: opt-in measurements outside the test run (``make bench``)."""
