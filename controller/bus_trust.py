"""Who on the bus is trusted, and when the bus must be authenticated.

The bus port is reachable by whoever can route to it, so nothing learnt from it may weaken
enforcement by itself: only a sensor that proved its identity with an authorised CURVE key
is protected by anti-lockout (``may_protect``). Configured sensor addresses
(``[safety] sensors``) are protected by the policy's guard, not here.

Listening on anything but loopback or ipc without CURVE lets any host feed records; it is
refused unless the operator passes ``--no-curve`` (then a loud warning), see
``check_listen``.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Iterable

from netwarden.errors import ConfigError

log = logging.getLogger("netwarden.bus")


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.0.0.0/8, ::1,
    localhost); False for wildcards, interface names and every other address."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rpartition(":")[0]
    if ";" in host:  # tcp://source;destination: the bind side is the destination
        host = host.rpartition(";")[2]
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_listen(endpoints: Iterable[str], *, curve: bool, no_curve: bool, command: str) -> None:
    """Refuse an unauthenticated bus reachable from other hosts, unless ``no_curve``.

    With ``no_curve`` the operator accepted the risk: warn loudly (stderr and log); sensors
    seen on such a bus are still never protected from blocking."""
    exposed = [ep for ep in endpoints if not is_local_endpoint(ep)]
    if curve:
        if no_curve:
            raise ConfigError(f"{command}: --no-curve and --curve-keys contradict each other")
        return
    if not exposed:
        return
    if not no_curve:
        raise ConfigError(
            f"{command}: listening on {', '.join(exposed)} without CURVE lets any host that can "
            "reach the port feed records; give --curve-keys DIR (see `netwarden keygen`), "
            "or --no-curve to accept that"
        )
    msg = (
        f"WARNING: {command} is listening on {', '.join(exposed)} WITHOUT authentication "
        "(--no-curve): any host that reaches the port can send records; sensors on this bus "
        "are not protected from blocking"
    )
    print(msg, file=sys.stderr, flush=True)
    log.warning("%s", msg)


def may_protect(curve_key: str) -> bool:
    """Only a sensor authenticated by an authorised CURVE key earns anti-lockout; an
    address that merely sent a valid message is not trusted (it could be the attacker)."""
    return bool(curve_key)
