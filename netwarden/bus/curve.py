"""CURVE key files of the bus, as written by ``netwarden keygen`` (zmq.auth certificates).

Shared by the sensor side (``netwarden.bus.publisher.CurveClientKeys``) and the controller side
(``netwarden.bus.collector.CurveServerKeys``) so both report a bad key directory the same way.
"""

from __future__ import annotations

from pathlib import Path

from netwarden.errors import ConfigError


def read_key_file(path: Path, *, secret: bool) -> tuple[bytes, bytes]:
    """(public, secret) from a key file; ``secret=True`` insists the secret half is there.
    Every failure is a ``ConfigError`` naming the file."""
    from zmq.auth import load_certificate

    if not path.is_file():
        raise ConfigError(f"CURVE keys: {path} is missing (run `netwarden keygen`)")
    try:
        public, secret_key = load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"CURVE keys in {path.parent}: {exc}") from None
    if secret and not secret_key:
        raise ConfigError(f"CURVE keys: {path} holds no secret key")
    return public, secret_key or b""
