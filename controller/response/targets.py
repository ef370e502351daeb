"""What may be banned or allow-listed at all, and for how long (operator input checks).

Independent of anti-lockout (``policy.Guard``): these targets are refused because banning
them is meaningless or harmful whoever asks:

- multicast, broadcast and unspecified addresses never send traffic of their own (a ban
  is a typo or an attempt to break discovery protocols);
- IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) never appear as a packet's source: the
  IPv4 address is what to ban (and ``::ffff:127.0.0.1`` is loopback);
- scoped addresses (``fe80::1%eth0``): the kernel sets hold bare addresses, so the scope
  would be lost and the stored ban would never match the kernel (a resync flip-flop).

An allow-list entry as wide as a whole address family (``0.0.0.0/0``, ``::/0``) lifts every
ban; it needs an explicit ``force``.
"""

from __future__ import annotations

import ipaddress
import math

from netwarden.errors import ConfigError, PolicyRefused

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: longest ban an operator may give (a ban without a ttl lasts until unbanned)
MAX_TTL_S = 10 * 366 * 86400.0
#: allow-list entries wider than this prefix need ``force`` (they cover a large share of a
#: family: 0.0.0.0/0 lifts every IPv4 ban)
WIDEST_ALLOW = {4: 8, 6: 16}

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def check_ttl(value: object) -> float | None:
    """A ban duration in seconds: None (until unbanned) or a finite number in
    (0, MAX_TTL_S]. NaN would be stored as a permanent ban; inf or 1e308 overflow the
    kernel's millisecond timeouts."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"ttl must be a number of seconds, got {value!r}")
    try:
        ttl = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"ttl must be a number of seconds, got {value!r}") from None
    if not math.isfinite(ttl):
        raise ConfigError(
            f"ttl must be a finite number of seconds, got {value!r} (omit it for a ban until unbanned)"
        )
    if ttl <= 0:
        raise ConfigError("ttl must be positive (omit it for a ban until unbanned)")
    if ttl > MAX_TTL_S:
        raise ConfigError(
            f"ttl {ttl:g}s is longer than the limit of {MAX_TTL_S:.0f}s (10 years); omit it for a ban until unbanned"
        )
    return ttl


def _scoped(net: IPNetwork) -> bool:
    return bool(getattr(net.network_address, "scope_id", None))


def unbannable(net: IPNetwork) -> str | None:
    """Why ``net`` can never be a ban target, or None."""
    addr = net.network_address
    if _scoped(net):
        bare = str(addr).split("%")[0]
        return f"{net}: scoped addresses cannot be banned (the kernel sets hold bare addresses); ban {bare} instead"
    if net.version == 6:
        mapped = addr.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None and net.prefixlen >= 96:
            return (
                f"{net} is an IPv4-mapped IPv6 address, never a packet's source"
                f"{' (it maps to loopback)' if mapped.is_loopback else ''}; ban {mapped} instead"
            )
    if net.is_multicast:
        return f"{net} is multicast: it never sends traffic of its own, so it cannot be banned"
    if net.num_addresses == 1 and addr.is_unspecified:
        return f"{net} is the unspecified address: it cannot be banned"
    if net.num_addresses == 1 and addr == _BROADCAST:
        return f"{net} is the broadcast address: it cannot be banned"
    return None


def allow_refusal(net: IPNetwork, force: bool = False) -> str | None:
    """Why ``net`` cannot be allow-listed (without ``force`` for a very wide one), or None."""
    if _scoped(net):
        return (
            f"{net}: scoped addresses cannot be allow-listed (the kernel sets hold bare addresses)"
        )
    widest = WIDEST_ALLOW[net.version]
    if net.prefixlen < widest and not force:
        share = "every IPv4 address" if net.version == 4 else "every IPv6 address"
        what = (
            f"allows {share} and lifts every ban"
            if net.prefixlen == 0
            else f"is wider than /{widest}"
        )
        return f"{net} {what}; pass --force if that is really meant"
    return None


def check_allow(net: IPNetwork, force: bool = False) -> None:
    why = allow_refusal(net, force)
    if why:
        raise PolicyRefused(why)
