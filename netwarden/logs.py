"""Logging for every ``netwarden`` command: plain lines, or JSON lines (``--log-json``).

A JSON line carries ``ts`` (epoch seconds), ``time`` (ISO 8601 UTC), ``level``, ``logger``,
``event``, ``msg`` and the event's own fields. ``event`` is a stable name to alert or
search on (``controller.listen``, ``sensor.joined``...: ``EVENTS``); a message logged
without one gets ``<logger>.log``. Messages may change wording between versions; event
names and their fields do not.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

#: the stable event names, what each means, and its fields
EVENTS: dict[str, str] = {
    "controller.listen": "the controller listens for sensors (endpoints, curve)",
    "controller.stopping": "the controller got a stop signal; kernel bans stay in place",
    "controller.stopped": "the controller has closed its state",
    "metrics.listen": "a Prometheus endpoint is served (url)",
    "sensor.joined": "a sensor's first message of a session reached the controller (sensor, session)",
    "sensor.restarted": "a sensor came back with a new session (sensor, old_session, session)",
    "sensor.stopped": "a sensor said goodbye (sensor, undelivered)",
    "sensor.down": "a sensor went silent (sensor, silent_s)",
    "sensor.up": "a silent sensor is heard again (sensor)",
}

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def event(name: str, **fields: Any) -> dict[str, Any]:
    """``log.info(msg, *args, extra=event("sensor.joined", sensor=sid))``."""
    return {"event": name, "fields": fields}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or f"{record.name}.log",
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(verbose: int = 0, json_lines: bool = False) -> None:
    """Configure the root logger once per process (stderr)."""
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))
