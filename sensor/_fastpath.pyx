# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled flow engine: the hot path mirroring ``sensor._fastpath_py`` record for record.

Split by concern into include files:
  _cdefs.pxi      C declarations (libc, byte swaps, records.h)
  _layout.pxi     record struct layout check against sensor.schema (runs at import)
  _pcapread.pxi   pcap / pcapng reader over an mmap (zero copy)
  _decode.pxi     link, L2, IP and tunnel header decoders
  _dns.pxi        DNS header + first question parser (bounded)
  _tcp.pxi        Zeek's TCP endpoint state machine and sequence accounting
See sensor/engine.py for the contract both backends honour.
"""

import os

from netwarden.errors import CaptureError, CaptureFormatError, ConfigError, SchemaError
from sensor.batch import PacketBatch

include "_cdefs.pxi"
include "_layout.pxi"
include "_pcapread.pxi"
include "_decode.pxi"
include "_dns.pxi"
include "_tcp.pxi"

# Refuse to load if records.h and sensor/schema.py disagree: every record written below is
# memcpy'd into arrays of those dtypes.
check_record_layouts()
