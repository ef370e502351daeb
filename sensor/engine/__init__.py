"""Choose the flow engine backend, in one place.

Both backends expose the same names with the same behaviour:

* ``PcapReader(path)`` -- ``.batches(max_packets=4096)`` yields ``PacketBatch`` objects
  (see ``sensor/capture/batch.py``). On a malformed or truncated file it first yields every packet
  read before the fault, then raises ``CaptureFormatError`` naming the path and offset.
* ``FlowEngine(config: EngineConfig)`` --
  ``feed(batch, pktsum=None)`` decodes and assembles a batch (fills ``pktsum[:batch.count]``
  with ``PKTSUM_DTYPE`` rows when an array is given);
  ``advance(now_ns)`` expires flows idle (or active) up to network time ``now_ns``;
  ``flush()`` ends every live flow (end of input);
  ``drain_flows(out)`` / ``drain_arp(out)`` move finished ``FLOW_DTYPE`` / ``ARP_DTYPE``
  records into a caller-owned array and return how many;
  ``stats()`` returns a dict of counters (packets, bytes, decode_errors, flows_live, ...).

``NETWARDEN_BACKEND=py`` forces the pure-Python reference (``sensor.engine.reference.fastpath``);
``=c`` requires the compiled one; unset prefers compiled and falls back to Python.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

BACKEND_ENV = "NETWARDEN_BACKEND"
BACKENDS = {"c": "sensor._fastpath", "py": "sensor.engine.reference.fastpath"}


def pick_backend(
    backends: dict[str, str], name: str | None = None, needs: str | None = None
) -> ModuleType:
    """The module ``backends[name]`` (name defaults to ``$NETWARDEN_BACKEND``). With no name,
    the compiled one ("c") when it imports and has the attribute ``needs``, else the
    pure-Python reference ("py"). Shared by every component that has both backends."""
    name = name or os.environ.get(BACKEND_ENV) or ""
    if name:
        if name not in backends:
            from netwarden.errors import ConfigError

            raise ConfigError(f"{BACKEND_ENV} must be one of {sorted(backends)}, got {name!r}")
        return importlib.import_module(backends[name])
    try:
        mod = importlib.import_module(backends["c"])
        if needs is None or hasattr(mod, needs):
            return mod
    except ImportError:
        pass
    return importlib.import_module(backends["py"])


def load_backend(name: str | None = None) -> ModuleType:
    """The flow engine backend (``PcapReader``, ``FlowEngine``)."""
    return pick_backend(BACKENDS, name, needs="FlowEngine")
