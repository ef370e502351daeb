"""Flow engine options shared by ``netwarden flows`` and ``netwarden sensor``.

Not a subcommand: both commands add the same timeout and checksum arguments with
``add_engine_arguments`` and turn them into an ``EngineConfig`` with ``engine_config``.
Defaults stay in ``EngineConfig`` (Zeek's inactivity timeouts), so an option left unset
changes nothing. Kept free of heavy imports because it runs while the parsers are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensor.engine.config import EngineConfig

#: Option destinations; each is also the ``EngineConfig`` field it sets.
TIMEOUT_OPTIONS = ("tcp_timeout", "udp_timeout", "icmp_timeout", "other_timeout", "active_timeout")


_HELP = {
    "tcp_timeout": "TCP inactivity timeout, seconds of capture time (default 300, as Zeek)",
    "udp_timeout": "UDP inactivity timeout (default 60)",
    "icmp_timeout": "ICMP inactivity timeout (default 60)",
    "other_timeout": "inactivity timeout of other transports (default 60)",
    "active_timeout": "interim record for flows alive this long (default 1800; 0: never)",
}


def add_engine_arguments(group: Any) -> None:
    """``--tcp-timeout --udp-timeout --icmp-timeout --other-timeout --active-timeout
    --validate-checksums``."""
    for dest in TIMEOUT_OPTIONS:
        opt = "--" + dest.replace("_", "-")
        group.add_argument(opt, type=float, default=None, metavar="S", help=_HELP[dest])
    group.add_argument("--validate-checksums", action="store_true",
                       help="drop packets with bad IP/TCP/UDP/ICMP checksums (default: keep them, like zeek -C)")  # fmt: skip


def engine_config(args: Any, **fields: Any) -> EngineConfig:
    """The ``EngineConfig`` the options ask for (``fields`` sets others); a bad value
    raises ``ConfigError`` naming the option."""
    from netwarden.errors import ConfigError
    from sensor.engine.config import EngineConfig

    kw = dict(fields)
    if getattr(args, "validate_checksums", False):
        kw["validate_checksums"] = True
    for dest in TIMEOUT_OPTIONS:
        value = getattr(args, dest, None)
        if value is not None:
            kw[dest] = float(value)
    try:
        return EngineConfig(**kw)
    except ConfigError as exc:
        # EngineConfig names its field; the user typed the option.
        msg = str(exc)
        for dest in TIMEOUT_OPTIONS:
            if msg.startswith(dest) and getattr(args, dest, None) is not None:
                raise ConfigError("--" + dest.replace("_", "-") + msg[len(dest) :]) from None
        raise
