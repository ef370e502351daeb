"""netwarden.memory: record-sized blocks are served from (and freed back to) the heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, sys
from netwarden.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
block = libc.malloc(16 << 20)  # a large record buffer
lo = hi = 0
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
print(applied, lo <= block < hi)
"""


def _run(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


def test_large_blocks_come_from_the_heap_once_applied() -> None:
    if _run("off") != "None False":
        pytest.skip("this C library serves large blocks from the heap anyway (not glibc)")
    # glibc maps a 16 MiB block on its own (and unmaps it when freed) unless told otherwise.
    assert _run("on") == "True True"


def _cli_env(preset: dict[str, str]) -> list[str]:
    code = ("import os, netwarden.cli, numpy; "
            "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], os.environ['OPENBLAS_NUM_THREADS'])")  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMPY_MADVISE_HUGEPAGE", "OPENBLAS_NUM_THREADS")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**env, **preset})  # fmt: skip
    return out.stdout.split()


def test_commands_set_numpy_defaults_before_numpy_loads_and_operators_win() -> None:
    assert _cli_env({}) == ["0", "1"]  # no huge pages per array, one BLAS thread
    assert _cli_env({"NUMPY_MADVISE_HUGEPAGE": "1", "OPENBLAS_NUM_THREADS": "4"}) == ["1", "4"]
