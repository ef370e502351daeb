"""NetWarden: network sensor and response controller.

``netwarden.read_flows(path, **engine_options)`` returns the flows of capture files as a
``pyarrow.Table``; ``netwarden.iter_flow_batches`` streams them as record batches. Both are
imported on first use, so ``import netwarden`` stays light."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["iter_flow_batches", "read_flows"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from netwarden import flow_tables

        return getattr(flow_tables, name)
    raise AttributeError(f"module 'netwarden' has no attribute {name!r}")
