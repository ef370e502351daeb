# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled flow engine: the hot path mirroring ``sensor.engine.reference.fastpath`` record for record.

_fastpath.pxd is the table of contents: every constant and struct, file by file. The
functions are split by concern into include files:
  cdefs.pxi      C declarations (libc, byte swaps, records.h)
  layout.pxi     record struct layout check against netwarden.records.schema (runs at import)
  pcapread.pxi   pcap / pcapng reader over an mmap (zero copy)
  decode.pxi     link, L2, IP and tunnel header decoders
  dns.pxi        DNS header + first question parser (bounded)
  tcp.pxi        Zeek's TCP endpoint state machine and sequence accounting
  flow.pxi       the flow struct, history letters, per-direction statistics
  flowtable.pxi  open-addressing flow table over a pool of flow structs, LRU order
  timers.pxi     network-time timer heap; idle timeouts and firing
  frag.pxi       bounded IP fragment reassembly and its expiry
  engine.pxi     the packet path: link, L3, ARP, new flows, the transport step
  wifi.pxi       802.11 frames in the packet path (A-MSDU subframes)
  records.pxi    conn_state and the emitted flow record
  tunnels.pxi    tunnel ids and UDP tunnel dispatch
  apps.pxi       UDP/ICMP accounting, DNS summary, DNS/NTP analyzer flips
  tcpflow.pxi    TCP per flow: reuse, history, state machine, close/EOF
  api.pxi        FlowEngine, the Python boundary
See sensor/engine/__init__.py for the contract both backends honour.
"""

import mmap
import os

import numpy as np

from netwarden.errors import (
    CaptureError, CaptureFormatError, ConfigError, SchemaError, UnsupportedLinkType,
)
from sensor.capture.batch import PacketBatch
from netwarden.records.schema import ARP_DTYPE, FLOW_DTYPE, PKTSUM_DTYPE

__all__ = ["PcapReader", "FlowEngine", "BACKEND", "check_record_layouts", "c_layouts"]

BACKEND = "c"

#: The reference semantics revision (sensor.engine.reference.fastpath.SEMANTICS_REVISION) this module
#: mirrors; tests of newer rules skip the compiled twin until it catches up.
SEMANTICS_REVISION = 7

# cdefs.pxi: included by _fastpath.pxd, the table of contents of every struct below
include "engine/layout.pxi"
include "engine/pcapread.pxi"
include "engine/decode.pxi"
include "engine/dns.pxi"
include "engine/tcp.pxi"
include "engine/flow.pxi"
include "engine/flowtable.pxi"
include "engine/timers.pxi"
include "engine/frag.pxi"
include "engine/engine.pxi"
include "engine/wifi.pxi"
include "engine/records.pxi"
include "engine/tunnels.pxi"
include "engine/apps.pxi"
include "engine/tcpflow.pxi"
include "engine/api.pxi"

# Refuse to load if records.h and netwarden/records/schema.py disagree: every record written below is
# memcpy'd into arrays of those dtypes.
check_record_layouts()
