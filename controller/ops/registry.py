"""One registry of control-socket operations.

Every operation the controller serves (``ban``, ``bans``, ``ingest``, ...) is registered
here by name with a function ``fn(args, actor) -> result``; the control socket dispatches
through ``Operations.dispatch`` and nothing else. Components that arrive later (detectors,
incidents, hunting queries) register their operations the same way, from the composition
root (``controller.app``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netwarden.errors import ConfigError, ControlError

#: args (the request's JSON object), operator name -> a JSON-serialisable result
Operation = Callable[[dict[str, Any], str], Any]


class Operations:
    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, name: str, fn: Operation) -> None:
        if name in self._ops:
            raise ConfigError(f"control operation {name!r} is registered twice")
        self._ops[name] = fn

    def names(self) -> list[str]:
        return sorted(self._ops)

    def dispatch(self, op: str, args: dict[str, Any], actor: str) -> Any:
        fn = self._ops.get(op)
        if fn is None:
            raise ControlError(f"unknown operation {op!r}")
        return fn(args, actor)

    __call__ = dispatch  # a ``Handler`` for the control server


def arg_float(args: dict[str, Any], key: str) -> float | None:
    """An optional number from a request (None when absent or null)."""
    value = args.get(key)
    return None if value is None else float(value)
