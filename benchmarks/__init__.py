"""Benchmarks: opt-in measurements outside the test run (``make bench``)."""

import os

# As ``netwarden.cli`` does for every command: baselines run in child processes
# (``python -m benchmarks.X --child``) and must not pay for numpy's spinning BLAS threads
# when the commands they are compared with do not.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
