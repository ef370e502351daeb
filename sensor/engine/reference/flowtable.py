# mypy: disable-error-code="misc"
# (mixin methods annotate self as the FlowEngine they are part of; mypy cannot see that
# subclass relation through the import cycle and reports it as "misc")
"""The flow table's removal path (twin of flowtable.pxi)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sensor.engine.reference.flow import Flow

if TYPE_CHECKING:
    from sensor.engine.reference.fastpath import FlowEngine


class FlowTableMixin:
    def _remove(self: FlowEngine, f: Flow, reason: int) -> None:
        if f.removed:
            return
        f.removed = True
        if self.table.get(f.key) is f:
            del self.table[f.key]
        self._emit(f, reason, False)
