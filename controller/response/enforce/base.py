"""The typed Enforcer contract shared by the nftables, iptables and dry-run backends.

A backend only moves addresses in and out of kernel sets; policy, the store and the audit
log live elsewhere. Every ``apply`` is verified by reading the kernel state back, and a
backend never touches anything outside the objects it owns.
"""

from __future__ import annotations

import abc
import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netwarden.errors import EnforcementError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: what a ban applies to: one address, or a range (a network wider than one address).
#: Always normalised by ``target()`` so a /32 or /128 is an address, never a network.
Target = IPAddress | IPNetwork


def target(value: object) -> Target:
    """Normalise an address, CIDR string or network into a ban target."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    net = (
        value
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else (ipaddress.ip_network(str(value), strict=False))
    )
    return net.network_address if net.num_addresses == 1 else net


def as_network(t: Target) -> IPNetwork:
    return (
        t
        if isinstance(t, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(t)
    )


def is_range(t: Target) -> bool:
    return isinstance(t, ipaddress.IPv4Network | ipaddress.IPv6Network)


class Action(enum.StrEnum):
    """What happens to a banned source: dropped, or rate-limited (the softer action)."""

    DROP = "drop"
    RATE_LIMIT = "ratelimit"


class Hook(enum.StrEnum):
    INPUT = "input"  # a host protecting itself
    FORWARD = "forward"  # a gateway protecting what is behind it
    PREROUTING = "prerouting"  # raw priority: drop floods before conntrack


@dataclass(frozen=True, slots=True)
class BanSpec:
    """One element to put in the kernel. ``ttl_s`` None means until unbanned.

    ``addr`` is a ``Target``: ranges (networks) are dropped only, not rate-limited."""

    addr: Target
    action: Action
    ttl_s: float | None
    decision_id: str


@dataclass(frozen=True, slots=True)
class KernelBan:
    """One element as read back from the kernel; ``remaining_s`` None means no timeout."""

    addr: Target
    action: Action
    remaining_s: float | None
    decision_id: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    added: int
    removed: int
    elapsed_s: float


class Enforcer(abc.ABC):
    """Contract: idempotent setup, atomic verified apply, read-back of what is in force."""

    name: str = "abstract"

    @abc.abstractmethod
    def setup(self) -> None:
        """Create our own table/chain/sets if missing. Never removes existing bans."""

    def _verify_schema(self) -> None:
        """Raise ``EnforcementError`` unless our objects are in place as ``setup`` left them.

        Backends that can read their schema back cheaply override this so a periodic
        ``ensure`` does not replace healthy rules (and reset their counters); by default
        the schema is never taken as verified."""
        raise EnforcementError(f"{self.name}: no schema read-back")

    def ensure(self) -> bool:
        """Re-create our objects only if they are missing or altered; True if it had to."""
        try:
            self._verify_schema()
            return False
        except EnforcementError:
            self.setup()
            return True

    @abc.abstractmethod
    def apply(
        self, add: Sequence[BanSpec] = (), remove: Sequence[tuple[Target, Action]] = ()
    ) -> ApplyResult:
        """Add/refresh and remove bans; removing an absent ban is not an error.

        Removals happen before additions, so removing and adding the same key replaces it
        (new timeout and decision id) without an instant where it is missing.

        Raises ``EnforcementError`` if the kernel refused the change or the read-back does
        not show it.
        """

    @abc.abstractmethod
    def list_bans(self) -> list[KernelBan]:
        """Every ban element currently in the kernel (expired ones are gone)."""

    def confirm(self, keys: Sequence[tuple[Target, Action]]) -> set[tuple[Target, Action]]:
        """Which of these bans are in force; backends with exact lookups override this."""
        wanted = set(keys)
        return {(b.addr, b.action) for b in self.list_bans() if (b.addr, b.action) in wanted}

    @abc.abstractmethod
    def set_allow(self, networks: Iterable[IPNetwork]) -> None:
        """Replace the kernel allow-list (accepted before any ban) atomically."""

    @abc.abstractmethod
    def list_allow(self) -> list[IPNetwork]:
        """The kernel allow-list as collapsed networks."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything this backend owns (tests and uninstall only)."""

    def close(self) -> None:
        """Release sockets; kernel state stays in place."""


def collapse(
    networks: Iterable[IPNetwork],
) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv6Network]]:
    """Split by family and merge overlapping/adjacent networks (interval sets reject overlap)."""
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return (
        list(ipaddress.collapse_addresses(v4)),  # type: ignore[arg-type]
        list(ipaddress.collapse_addresses(v6)),  # type: ignore[arg-type]
    )
