"""One exception hierarchy for sensor, bus and controller.

Callers catch the subclass they can act on; the CLI catches ``NetWardenError`` and prints
its one-line message.
"""

from __future__ import annotations


class NetWardenError(Exception):
    """Base of every error NetWarden raises on purpose."""


class ConfigError(NetWardenError):
    """Invalid configuration or command-line value."""


class SchemaError(NetWardenError):
    """A record layout or schema version does not match."""


class CaptureError(NetWardenError):
    """Reading packets failed (file or interface)."""


class CaptureFormatError(CaptureError):
    """A capture file is malformed, truncated or of an unsupported format.

    ``path`` and ``offset`` name where reading stopped; records read before the fault are
    still delivered.
    """

    def __init__(self, message: str, path: str = "", offset: int = -1) -> None:
        self.path = path
        self.offset = offset
        where = path or "<capture>"
        if offset >= 0:
            where = f"{where} at offset {offset}"
        super().__init__(f"{where}: {message}")


class UnsupportedLinkType(CaptureFormatError):
    """The capture's link type is not decoded."""


class InterfaceError(CaptureError):
    """A live interface cannot be opened or configured."""


class BusError(NetWardenError):
    """Messaging between sensors and the controller failed."""


class FrameError(BusError):
    """A bus message is malformed, oversized or of another schema."""


class EnforcementError(NetWardenError):
    """A firewall backend failed to apply or read back a change."""


class PolicyRefused(NetWardenError):
    """Policy refused an action (allow-listed, self, gateway, ...); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ControlError(NetWardenError):
    """The controller's control socket could not be reached or answered an error."""


class StoreError(NetWardenError):
    """The embedded database is unreadable or its audit chain is broken."""


class FrameRejected(FrameError):
    """A bus message was refused by the decoder; ``reason`` is a short counter name
    (``malformed``, ``wire_version``, ``schema_version``, ``record_type``, ``dtype_hash``,
    ``size``, ``oversized``)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
