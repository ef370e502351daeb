"""nftables backend over netlink: our own ``inet netwarden`` table and nothing else.

Layout (one base chain named after its hook)::

    table inet netwarden {
      set allow4 { type ipv4_addr; flags interval; }      set allow6 { ... ipv6 ... }
      set ban4   { type ipv4_addr; flags timeout; }       set ban6   { ... }
      set rng4   { type ipv4_addr; flags interval,timeout; }  set rng6 { ... }  (range bans)
      set limit4 { type ipv4_addr; flags timeout; }       set limit6 { ... }
      set meter4 { type ipv4_addr; flags dynamic,timeout; }  (kernel-filled, per source)
      chain input { type filter hook input priority -10; policy accept;
        ip saddr @allow4 accept;   ip6 saddr @allow6 accept      # allow-list first
        ip saddr @ban4 counter drop; ip6 saddr @ban6 counter drop
        ip saddr @rng4 counter drop; ip6 saddr @rng6 counter drop
        ip saddr @limit4 update @meter4 { ip saddr limit rate over R/second burst B packets }
            counter drop                                      # per-source limit (and v6)
      }
    }

Elements carry their own timeout (ms) and the decision id as comment, so the kernel expires
bans by itself and ``nft list`` shows why an address is there. The table is created
without the "owner" flag so bans survive the controller.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Sequence

from controller.response.enforce import netlink_msgs as nl
from controller.response.enforce.base import (
    Action,
    ApplyResult,
    BanSpec,
    Enforcer,
    Hook,
    IPAddress,
    IPNetwork,
    KernelBan,
    Target,
    is_range,
)
from controller.response.enforce.netns import call_in_netns
from netwarden.errors import EnforcementError

log = logging.getLogger(__name__)

HOOKNUM = {Hook.PREROUTING: 0, Hook.INPUT: 1, Hook.FORWARD: 2}
#: raw priority (-300) for prerouting drops floods before conntrack; just ahead of the
#: usual filter priority (0) otherwise, so our drop is seen before an operator's accept.
DEFAULT_PRIORITY = {Hook.PREROUTING: -300, Hook.INPUT: -10, Hook.FORWARD: -10}
#: our rules, in chain order: the allow-list first
RULE_ORDER = ("allow", "ban", "rng", "limit")
#: a per-source limiter is forgotten after this long without packets
METER_TIMEOUT_MS = 60_000
#: at most this many elements are verified one by one; above it the set is dumped once
PROBE_LIMIT = 32


def _set_name(action: Action, t: Target) -> str:
    if is_range(t):
        if action is not Action.DROP:
            raise EnforcementError(f"{t}: ranges can be dropped, not rate-limited")
        return f"rng{t.version}"
    return f"{'ban' if action is Action.DROP else 'limit'}{t.version}"


def _interval_elements(net: IPNetwork, timeout_ms: int | None, comment: str) -> list[bytes]:
    """An interval-set entry is two elements: the start (carrying timeout and comment),
    and the first key after the end flagged INTERVAL_END (omitted when the range reaches
    the top of the address space)."""
    out = [nl.element(net.network_address.packed, timeout_ms, comment)]
    end = int(net.broadcast_address) + 1
    if end < 2**net.max_prefixlen:
        # the kernel refuses a timeout on an end element; the start's timeout governs both
        out.append(
            nl.element(
                end.to_bytes(net.max_prefixlen // 8, "big"), None, "", nl.ELEM_F_INTERVAL_END
            )
        )
    return out


def _intervals(
    elements: list[nl.DumpedElement], version: int
) -> list[tuple[int, int, nl.DumpedElement]]:
    """(first, last, start element) of every interval in an interval set dump.

    The kernel lists an interval as a start element and an end element whose key is one
    past the interval's last address (no end when it reaches the top of the address
    space). Adjacent intervals share a key: the end of one and the start of the next, so
    at equal keys the end sorts first. A start with no end before the next start (never
    written by us) is closed at the next start rather than stretched to the top."""
    top = 2 ** (32 if version == 4 else 128) - 1
    points = sorted(
        elements, key=lambda e: (int.from_bytes(e.key, "big"), not e.flags & nl.ELEM_F_INTERVAL_END)
    )
    out: list[tuple[int, int, nl.DumpedElement]] = []
    start: nl.DumpedElement | None = None
    for el in points:
        value = int.from_bytes(el.key, "big")
        if not el.flags & nl.ELEM_F_INTERVAL_END:
            if start is not None and value > int.from_bytes(start.key, "big"):
                out.append((int.from_bytes(start.key, "big"), value - 1, start))
            start = el
        elif start is not None:
            first = int.from_bytes(start.key, "big")
            if value > first:
                out.append((first, value - 1, start))
            start = None
    if start is not None:
        out.append((int.from_bytes(start.key, "big"), top, start))
    return out


def _pair_intervals(
    elements: list[nl.DumpedElement], version: int
) -> list[tuple[IPNetwork, nl.DumpedElement]]:
    """Rebuild (network, start element) pairs from an interval set dump."""
    return [
        (net, el)
        for first, last, el in _intervals(elements, version)
        for net in _range_networks(first, last, version)
    ]


def _merged(nets: Iterable[IPNetwork]) -> list[tuple[int, int, int]]:
    """(version, first, last) ranges covering ``nets``, overlapping and adjacent ones merged:
    what an interval set holds, whatever CIDRs describe it."""
    out: list[tuple[int, int, int]] = []
    for version, first, last in sorted(
        (n.version, int(n.network_address), int(n.broadcast_address)) for n in nets
    ):
        if out and out[-1][0] == version and first <= out[-1][2] + 1:
            out[-1] = (version, out[-1][1], max(out[-1][2], last))
        else:
            out.append((version, first, last))
    return out


class NftablesEnforcer(Enforcer):
    name = "nftables"

    def __init__(
        self,
        hook: Hook = Hook.INPUT,
        *,
        table: str = "netwarden",
        priority: int | None = None,
        limit_rate: int = 10,
        limit_burst: int = 20,
        netns: str | None = None,
    ) -> None:
        self.hook = Hook(hook)
        self.table = table
        self.priority = DEFAULT_PRIORITY[self.hook] if priority is None else priority
        self.limit_rate = limit_rate
        self.limit_burst = limit_burst
        self.netns = netns
        self._allow_applied: list[tuple[int, int, int]] | None = None  # last verified allow-list
        try:
            self.sock = call_in_netns(netns, nl.NftSocket)
        except OSError as exc:
            raise EnforcementError(f"nftables: cannot open netlink socket: {exc}") from exc

    # --- schema -------------------------------------------------------------------------
    def _chains(self) -> dict[str, tuple[int | None, int | None]]:
        """Our table's chains: name -> (hooknum, priority)."""
        out: dict[str, tuple[int | None, int | None]] = {}
        body = nl.strz(nl.CHAIN_TABLE, self.table)
        try:
            for mtype, payload in self.sock.dump(nl.GETCHAIN, nl.NFPROTO_INET, body):
                if mtype != nl.NEWCHAIN:
                    continue
                attrs = dict(nl.iter_attrs(payload))
                if attrs.get(nl.CHAIN_TABLE, b"").rstrip(b"\0").decode() != self.table:
                    continue
                name = attrs[nl.CHAIN_NAME].rstrip(b"\0").decode()
                hooknum = prio = None
                if nl.CHAIN_HOOK in attrs:
                    h = dict(nl.iter_attrs(attrs[nl.CHAIN_HOOK]))
                    hooknum = int.from_bytes(h[nl.HOOK_HOOKNUM], "big")
                    prio = int.from_bytes(h[nl.HOOK_PRIORITY], "big", signed=True)
                out[name] = (hooknum, prio)
        except OSError:
            return {}  # no table yet
        return out

    def _rules(self) -> list[tuple[int, int, int, bytes]]:
        chain = self.hook.value

        def rule(*exprs: bytes, comment: str) -> tuple[int, int, int, bytes]:
            body = (
                nl.strz(nl.RULE_TABLE, self.table)
                + nl.strz(nl.RULE_CHAIN, chain)
                + nl.nest(nl.RULE_EXPRESSIONS, *exprs)
                + nl.attr(nl.RULE_USERDATA, nl.udata_comment(comment))
            )
            return (nl.NEWRULE, nl.NLM_F_CREATE | nl.NLM_F_APPEND, nl.NFPROTO_INET, body)

        out = []
        for verdict_sets in RULE_ORDER:
            for version, proto in ((4, nl.NFPROTO_IPV4), (6, nl.NFPROTO_IPV6)):
                head = (
                    nl.ex_meta_nfproto(),
                    nl.ex_cmp_eq(bytes((proto,))),
                    nl.ex_saddr(version == 6),
                    nl.ex_lookup(f"{verdict_sets}{version}"),
                )
                if verdict_sets == "allow":
                    tail: tuple[bytes, ...] = (nl.ex_verdict(nl.NF_ACCEPT),)
                elif verdict_sets in ("ban", "rng"):
                    tail = (nl.ex_counter(), nl.ex_verdict(nl.NF_DROP))
                else:
                    tail = (
                        nl.ex_meter_over(
                            f"meter{version}", self.limit_rate, self.limit_burst, METER_TIMEOUT_MS
                        ),
                        nl.ex_counter(),
                        nl.ex_verdict(nl.NF_DROP),
                    )
                out.append(rule(*head, *tail, comment=f"netwarden {verdict_sets}{version}"))
        return out

    def setup(self) -> None:
        """One transaction: table, sets, chain, and the chain's rules replaced.

        Existing set elements are untouched (no unban/reban on restart); rules are flushed
        and re-added inside the same transaction, so there is no instant without them.
        """
        existing = self._chains()
        items: list[tuple[int, int, int, bytes]] = []
        tbl = nl.strz(nl.TABLE_NAME, self.table)
        items.append((nl.NEWTABLE, nl.NLM_F_CREATE, nl.NFPROTO_INET, tbl))
        want = (HOOKNUM[self.hook], self.priority)
        for name, got in existing.items():
            if name != self.hook.value or got != want:  # hook/priority changed: replace
                ref = nl.strz(nl.CHAIN_TABLE, self.table) + nl.strz(nl.CHAIN_NAME, name)
                flush = nl.strz(nl.RULE_TABLE, self.table) + nl.strz(nl.RULE_CHAIN, name)
                items.append((nl.DELRULE, 0, nl.NFPROTO_INET, flush))
                items.append((nl.DELCHAIN, 0, nl.NFPROTO_INET, ref))
        set_id = 1
        for prefix, flags in (
            ("allow", nl.SET_F_INTERVAL),
            ("ban", nl.SET_F_TIMEOUT),
            ("limit", nl.SET_F_TIMEOUT),
            ("rng", nl.SET_F_INTERVAL | nl.SET_F_TIMEOUT),  # range bans
            ("meter", nl.SET_F_TIMEOUT | nl.SET_F_EVAL),  # filled by the kernel, per source
        ):
            for version, ktype, klen in ((4, nl.TYPE_IPADDR, 4), (6, nl.TYPE_IP6ADDR, 16)):
                body = (
                    nl.strz(nl.SET_TABLE, self.table)
                    + nl.strz(nl.SET_NAME, f"{prefix}{version}")
                    + nl.be32(nl.SET_FLAGS, flags)
                    + nl.be32(nl.SET_KEY_TYPE, ktype)
                    + nl.be32(nl.SET_KEY_LEN, klen)
                    + nl.be32(nl.SET_ID, set_id)
                )
                set_id += 1
                items.append((nl.NEWSET, nl.NLM_F_CREATE, nl.NFPROTO_INET, body))
        chain = nl.strz(nl.CHAIN_TABLE, self.table) + nl.strz(nl.CHAIN_NAME, self.hook.value)
        hook = nl.nest(
            nl.CHAIN_HOOK,
            nl.be32(nl.HOOK_HOOKNUM, HOOKNUM[self.hook]),
            nl.be32(nl.HOOK_PRIORITY, self.priority),
        )
        chain_body = (
            chain + hook + nl.be32(nl.CHAIN_POLICY, nl.NF_ACCEPT) + nl.strz(nl.CHAIN_TYPE, "filter")
        )
        items.append((nl.NEWCHAIN, nl.NLM_F_CREATE, nl.NFPROTO_INET, chain_body))
        flush = nl.strz(nl.RULE_TABLE, self.table) + nl.strz(nl.RULE_CHAIN, self.hook.value)
        items.append((nl.DELRULE, 0, nl.NFPROTO_INET, flush))  # flush our chain only
        items.extend(self._rules())
        self.sock.transaction(items)
        self._verify_schema()

    def _verify_schema(self) -> None:
        """Read the schema back through pyroute2 (an independent decoder)."""
        from pyroute2.nftables.main import NFTables

        def read() -> tuple[set[str], set[str], list[str]]:
            nft = NFTables(nfgen_family=nl.NFPROTO_INET)
            try:
                sets = {
                    s.get_attr("NFTA_SET_NAME")
                    for s in nft.get_sets()
                    if s.get_attr("NFTA_SET_TABLE") == self.table
                }
                chains = {
                    c.get_attr("NFTA_CHAIN_NAME")
                    for c in nft.get_chains()
                    if c.get_attr("NFTA_CHAIN_TABLE") == self.table
                }
                rules = [  # in chain order; pyroute2 decodes the comment from the userdata
                    str(r.get_attr("NFTA_RULE_USERDATA"))
                    for r in nft.get_rules()
                    if r.get_attr("NFTA_RULE_TABLE") == self.table
                    and r.get_attr("NFTA_RULE_CHAIN") == self.hook.value
                ]
            finally:
                nft.close()
            return sets, chains, rules

        sets, chains, rules = call_in_netns(self.netns, read)
        want_sets = {f"{p}{v}" for p in ("allow", "ban", "rng", "limit", "meter") for v in (4, 6)}
        want_rules = [f"netwarden {p}{v}" for p in RULE_ORDER for v in (4, 6)]
        if not want_sets <= sets or chains != {self.hook.value} or rules != want_rules:
            raise EnforcementError(
                f"nftables read-back mismatch: sets={sorted(sets)} chains={sorted(chains)} rules={rules}"
            )

    def teardown(self) -> None:
        try:
            self.sock.transaction(
                [(nl.DELTABLE, 0, nl.NFPROTO_INET, nl.strz(nl.TABLE_NAME, self.table))]
            )
        except EnforcementError as exc:
            if "ENOENT" not in str(exc):
                raise

    # --- bans ---------------------------------------------------------------------------
    def apply(
        self, add: Sequence[BanSpec] = (), remove: Sequence[tuple[Target, Action]] = ()
    ) -> ApplyResult:
        t0 = time.perf_counter()
        verify_remove = remove
        if any(is_range(a) for a, _ in remove):
            # the kernel matches an interval entry by its start key alone: destroying an
            # absent range that starts where a banned one does would lift the banned one
            present = {(b.addr, b.action) for b in self._list_ranges()}
            remove = [(a, act) for a, act in remove if not is_range(a) or (a, act) in present]
        adds: dict[str, list[bytes]] = {}
        dels: dict[str, list[bytes]] = {}
        for spec in add:
            ms = None if spec.ttl_s is None else max(1, int(spec.ttl_s * 1000))
            els = adds.setdefault(_set_name(spec.action, spec.addr), [])
            if isinstance(spec.addr, ipaddress.IPv4Network | ipaddress.IPv6Network):
                els.extend(_interval_elements(spec.addr, ms, spec.decision_id))
            else:
                els.append(nl.element(spec.addr.packed, ms, spec.decision_id))
        for addr, action in remove:
            els = dels.setdefault(_set_name(action, addr), [])
            if isinstance(addr, ipaddress.IPv4Network | ipaddress.IPv6Network):
                els.extend(_interval_elements(addr, None, ""))
            else:
                els.append(nl.element(addr.packed, None, ""))
        items: list[tuple[int, int, int, bytes]] = []
        # removals first so "remove X, add X" in one call re-adds it
        for set_name, els in dels.items():
            for body in nl.element_list_bodies(self.table, set_name, els):
                items.append((nl.DESTROYSETELEM, 0, nl.NFPROTO_INET, body))
        for set_name, els in adds.items():
            for body in nl.element_list_bodies(self.table, set_name, els):
                items.append((nl.NEWSETELEM, nl.NLM_F_CREATE, nl.NFPROTO_INET, body))
        if items:
            self.sock.transaction(items)
        self._verify_bans(add, verify_remove)
        return ApplyResult(len(add), len(verify_remove), time.perf_counter() - t0)

    def _verify_bans(self, add: Sequence[BanSpec], remove: Sequence[tuple[Target, Action]]) -> None:
        final: dict[tuple[Target, Action], bool] = {(a, act): False for a, act in remove}
        for spec in add:
            final[(spec.addr, spec.action)] = True
        if not final:
            return
        # exact lookups for what must be there; a dump (cheaper for many) for what must not
        if len(final) <= PROBE_LIMIT:
            present = self.confirm(list(final))
        else:
            present = {(b.addr, b.action) for b in self.list_bans()} & final.keys()
            # a dump taken while the kernel resizes a hash set can skip elements
            unseen = [k for k, want in final.items() if want and k not in present]
            if unseen:
                present |= self.confirm(unseen)
        wrong = [
            f"{a} ({act})" for (a, act), want in final.items() if ((a, act) in present) != want
        ]
        if wrong:
            raise EnforcementError(
                f"nftables read-back mismatch for {len(wrong)} elements: {', '.join(wrong[:5])}"
            )

    def confirm(self, keys: Sequence[tuple[Target, Action]]) -> set[tuple[Target, Action]]:
        """Which of these bans are in the kernel, by exact element lookups.

        Why not a dump: dumping a hash set while the kernel resizes it (right after a bulk
        insert) can skip elements; GETSETELEM looks each key up. One request carries up
        to ~1,000 keys; the kernel answers each in order and stops at the first absent
        one, so we resume after it.
        """
        by_set: dict[str, list[tuple[IPAddress, Action]]] = {}
        ranges: set[tuple[Target, Action]] = set()
        for addr, action in keys:
            if isinstance(addr, IPNetwork):  # a range (targets are normalised: see is_range)
                ranges.add((addr, action))  # few; the interval sets are dumped instead
            else:
                by_set.setdefault(_set_name(action, addr), []).append((addr, action))
        found: set[tuple[Target, Action]] = set()
        if ranges:
            found |= {(b.addr, b.action) for b in self._list_ranges()} & ranges
        for set_name, items in by_set.items():
            head = nl.strz(nl.ELEM_LIST_TABLE, self.table) + nl.strz(nl.ELEM_LIST_SET, set_name)
            encoded = [nl.element(a.packed, None, "") for a, _ in items]
            i, size = 0, 1000
            while i < len(items):
                chunk = items[i : i + size]
                body = head + nl.nest(nl.ELEM_LIST_ELEMENTS, *encoded[i : i + size])
                replies, code = self.sock.get(nl.GETSETELEM, nl.NFPROTO_INET, body)
                got = {el.key for r in replies for el in nl.decode_elements(r)}
                answered = 0
                for key in chunk:
                    if key[0].packed not in got:
                        break
                    found.add(key)
                    answered += 1
                if code == 0:
                    i += len(chunk)
                    size = min(1000, size * 4)
                elif code == errno.ENOENT:
                    i += answered + 1  # chunk[answered] is absent; resume after it
                    size = 8  # absent keys tend to come in runs: probe small until hits
                else:
                    raise EnforcementError(
                        f"nftables: element lookup in {set_name}: {os.strerror(code)}"
                    )
        return found

    def _dump_set(self, set_name: str) -> list[nl.DumpedElement]:
        body = nl.strz(nl.ELEM_LIST_TABLE, self.table) + nl.strz(nl.ELEM_LIST_SET, set_name)
        out: list[nl.DumpedElement] = []
        try:
            for mtype, payload in self.sock.dump(nl.GETSETELEM, nl.NFPROTO_INET, body):
                if mtype == nl.NEWSETELEM:
                    out.extend(nl.decode_elements(payload))
        except OSError as exc:
            raise EnforcementError(f"nftables: cannot read set {set_name}: {exc}") from exc
        return out

    def list_bans(self) -> list[KernelBan]:
        out: list[KernelBan] = []
        for prefix, action in (("ban", Action.DROP), ("limit", Action.RATE_LIMIT)):
            for version in (4, 6):
                cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
                for el in self._dump_set(f"{prefix}{version}"):
                    remaining = None if el.expiration_ms is None else el.expiration_ms / 1000.0
                    out.append(KernelBan(cls(el.key), action, remaining, el.comment))
        return out + self._list_ranges()

    def _list_ranges(self) -> list[KernelBan]:
        out: list[KernelBan] = []
        for version in (4, 6):
            for net, el in _pair_intervals(self._dump_set(f"rng{version}"), version):
                remaining = None if el.expiration_ms is None else el.expiration_ms / 1000.0
                out.append(KernelBan(net, Action.DROP, remaining, el.comment))
        return out

    # --- allow-list ---------------------------------------------------------------------
    def set_allow(self, networks: Iterable[IPNetwork]) -> None:
        """Flush and refill both interval sets in one transaction (no window without them).

        Adjacent and overlapping networks are written as one interval each (as ``nft``
        does). If the read-back disagrees, the previous allow-list is put back before the
        error is raised, so a refused change never stays half in force."""
        nets = list(networks)
        ranges = _merged(nets)
        self._write_allow(ranges)
        got = _merged(self.list_allow())
        if got != ranges:
            previous = self._allow_applied
            if previous is not None:
                try:
                    self._write_allow(previous)
                except EnforcementError as exc:
                    log.warning("nftables: could not restore the previous allow-list: %s", exc)
            raise EnforcementError(
                f"nftables allow-list read-back mismatch: wrote {_describe(ranges)}, read {_describe(got)}"
            )
        self._allow_applied = ranges

    def _write_allow(self, ranges: list[tuple[int, int, int]]) -> None:
        items: list[tuple[int, int, int, bytes]] = []
        for version in (4, 6):
            width = 32 if version == 4 else 128
            set_name = f"allow{version}"
            ref = nl.strz(nl.ELEM_LIST_TABLE, self.table) + nl.strz(nl.ELEM_LIST_SET, set_name)
            items.append((nl.DELSETELEM, 0, nl.NFPROTO_INET, ref))  # no elements: flush set
            els: list[bytes] = []
            for v, first, last in ranges:
                if v != version:
                    continue
                els.append(nl.element(first.to_bytes(width // 8, "big"), None, ""))
                if last + 1 < 2**width:  # an interval to the top needs no end mark
                    els.append(
                        nl.element(
                            (last + 1).to_bytes(width // 8, "big"), None, "", nl.ELEM_F_INTERVAL_END
                        )
                    )
            for body in nl.element_list_bodies(self.table, set_name, els):
                items.append((nl.NEWSETELEM, nl.NLM_F_CREATE, nl.NFPROTO_INET, body))
        self.sock.transaction(items)

    def list_allow(self) -> list[IPNetwork]:
        out: list[IPNetwork] = []
        for version in (4, 6):
            for first, last, _ in _intervals(self._dump_set(f"allow{version}"), version):
                out.extend(_range_networks(first, last, version))
        return out

    def close(self) -> None:
        self.sock.close()


def _range_networks(first: int, last: int, version: int) -> list[IPNetwork]:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return list(ipaddress.summarize_address_range(cls(first), cls(last)))


def _describe(ranges: list[tuple[int, int, int]]) -> str:
    text = [
        f"{_addr(v, first)}-{_addr(v, last)}" if first != last else _addr(v, first)
        for v, first, last in ranges
    ]
    return (
        ", ".join(text[:8]) + (f" (+{len(text) - 8} more)" if len(text) > 8 else "")
        if text
        else "nothing"
    )


def _addr(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
