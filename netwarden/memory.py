"""Allocator settings for the sensor and the controller.

Both hand large arrays around and drop them all the time: telemetry hands each window's
records over in new buffers (hundreds of KiB to a few MiB), which the publisher frees once
the controller has acknowledged them; the controller's detection ticks join the record
batches of each tick. glibc serves blocks of that size with ``mmap``, or gives the top of
the heap back when they are freed, so each one arrives as fresh pages the kernel must fault
in and zero: about 4% of the sensor's CPU on the 2M-packet benchmark capture (``perf``:
``clear_page_erms``). Raising both thresholds keeps freed blocks in the process for the next
one. Resident memory then stays at its peak (bounded by the publisher's buffer,
``--buffer-mb``, and by the records of one detection tick) instead of shrinking back.
They are applied by ``sensor.runner.make_pipeline`` in every process that runs telemetry (the
sensor, each fanout worker, a replay), by the live fanout parent (it holds the workers'
records until they are acknowledged) and by ``netwarden controller`` before it starts.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> bool:
    """Apply the settings above; False where the C library is not glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
