"""sensor.memory: record-sized blocks are served from (and freed back to) the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, sys
from sensor.memory import keep_freed_memory
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
