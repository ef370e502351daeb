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
  _flow.pxi       the flow struct, history letters, per-direction statistics
  _flowtable.pxi  open-addressing flow table over a pool of flow structs
  _timers.pxi     network-time timer heap
  _frag.pxi       bounded IP fragment reassembly
  _engine.pxi     engine state, packet path, flow table use, timers, fragments
  _records.pxi    conn_state and the emitted flow record
  _tunnels.pxi    tunnel ids and UDP tunnel dispatch
  _apps.pxi       UDP/ICMP accounting, DNS summary, DNS/NTP analyzer flips
  _tcpflow.pxi    TCP per flow: reuse, history, state machine, close/EOF
  _api.pxi        FlowEngine, the Python boundary
See sensor/engine.py for the contract both backends honour.
"""

import mmap
import os

import numpy as np

from netwarden.errors import (
    CaptureError, CaptureFormatError, ConfigError, SchemaError, UnsupportedLinkType,
)
from sensor.batch import PacketBatch
from sensor.schema import ARP_DTYPE, FLOW_DTYPE, PKTSUM_DTYPE

__all__ = ["PcapReader", "FlowEngine", "BACKEND", "check_record_layouts", "c_layouts"]

BACKEND = "c"

#: The reference semantics revision (sensor._fastpath_py.SEMANTICS_REVISION) this module
#: mirrors; tests of newer rules skip the compiled twin until it catches up.
SEMANTICS_REVISION = 7

include "_cdefs.pxi"
include "_layout.pxi"
include "_pcapread.pxi"
include "_decode.pxi"
include "_dns.pxi"
include "_tcp.pxi"
include "_flow.pxi"
include "_flowtable.pxi"
include "_timers.pxi"
include "_frag.pxi"
include "_engine.pxi"
include "_records.pxi"
include "_tunnels.pxi"
include "_apps.pxi"
include "_tcpflow.pxi"
include "_api.pxi"

# Refuse to load if records.h and sensor/schema.py disagree: every record written below is
# memcpy'd into arrays of those dtypes.
check_record_layouts()
