"""Who owns an address on the LAN: ``arp_spoofing``, ``ip_conflict``, ``address_misconfig``.

ARP records are condensed per batch to distinct claims ``(op, sender IP, sender MAC,
target IP)`` (a flood of identical packets is one claim with a count) and the few claims
are checked against what was learnt: which MAC owns each IP (and when each was last
heard), which IPs each MAC claims, which /24 subnets each segment (VLAN) carries, which
requests are pending (to tell a solicited reply from an unsolicited one), and which MACs
forward traffic to external addresses (the gateway, learnt from FLOW records).

They differ by behaviour, and the alert says which and why:

* ``arp_spoofing`` (attacker: the MAC): an *unsolicited unicast reply* (no one asked that
  host for that address; a gratuitous announcement to everyone is not one) claiming an
  address that is not the sender's own: the address belongs to another live MAC, or the MAC
  also claims other addresses, or the address is the gateway's (its owner forwards the
  external traffic, many hosts ask for it, or before either is learnt it is the first or
  last host of its /24). Poisoning tools send exactly this. Devices answering for their own
  address without a visible request are normal (a sensor does not see every request). Also
  spoofing, solicited or announced: a MAC that holds an address of its own claiming one that
  another live MAC holds, or claiming the gateway's address.
* ``ip_conflict`` (two devices, one address): a second MAC claims an address whose owner
  was heard within ``CONFLICT_S``, by requests, solicited replies or announcements, and
  neither MAC claims other addresses: a duplicated static address, not an attack.
* ``address_misconfig``: a known device (its MAC claimed an address before) now uses an
  address outside every /24 seen on its segment (swapped octets, a wrong static config).
  Probes from 0.0.0.0 are not claims.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from controller.detect.alert import Alert
from controller.detect.base import DetectorBase
from controller.detect.nets import batch_external, mac_str, mac_u64
from controller.detect.stack import register
from netwarden.records.schema import ARP_DTYPE

NS = 1_000_000_000
BROADCAST = 0xFFFFFFFFFFFF


def _ip(v: int) -> str:
    return f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def _ipv4_u32(octets: np.ndarray) -> np.ndarray:
    """(n, 4) address octets -> (n,) big-endian uint32 addresses."""
    o = octets.astype(np.uint32)
    return (o[:, 0] << 24) | (o[:, 1] << 16) | (o[:, 2] << 8) | o[:, 3]


@register
class ArpFamilyDetector(DetectorBase):
    """arp_spoofing, ip_conflict and address_misconfig from ARP (and FLOW for the gateway)."""

    name: ClassVar[str] = "arp_family"
    version: ClassVar[str] = "1"

    SOLICIT_S = 5.0  # a reply answers a request seen this recently
    LIVE_S = 600.0  # an owner heard this recently is still there
    CONFLICT_S = 300.0
    KNOWN_AFTER = 2  # claims before a MAC counts as a known device
    REPEAT_S = 600.0

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[int, dict[int, list[int]]] = {}  # ip -> mac -> [first, last, n]
        self.mac_ips: dict[int, dict[int, int]] = {}  # mac -> ip -> last ns
        self.subnets: dict[int, dict[int, set[int]]] = {}  # vlan -> /24 -> MACs
        self.requests: dict[tuple[int, int], int] = {}  # (asker ip, asked ip) -> ns
        self.next_hop: dict[int, int] = {}  # MAC -> flows it carried to external peers
        self._pending: list[np.ndarray] = []
        self._alerted: dict[tuple[str, str], int] = {}
        self._spoofers: dict[int, int] = {}  # MAC -> last spoofing alert ns (not learnt)

    def observe(self, record_type: str, batch: np.ndarray) -> None:
        if not len(batch):
            return
        if record_type == "arp":
            self._pending.append(batch)
            self._tick(int(batch["ts_ns"].max()))
        elif record_type == "flow":
            # the gateway MAC shows in any sample of outbound flows (address classes are
            # shared with the other flow detectors of the stack)
            step = -(-len(batch) // 4096) if len(batch) > 4096 else 1
            ext = (
                batch_external(batch, "resp_addr")[::step]
                & ~batch_external(batch, "orig_addr")[::step]
            )
            if ext.any():
                macs, n = np.unique(mac_u64(batch["resp_mac"][::step][ext]), return_counts=True)
                for m, c in zip(macs.tolist(), n.tolist(), strict=True):
                    self.next_hop[m] = self.next_hop.get(m, 0) + c

    def _gateway_macs(self) -> set[int]:
        if not self.next_hop:
            return set()
        top = max(self.next_hop.values())
        return {m for m, c in self.next_hop.items() if c >= max(3, top // 4)}

    def _is_gateway(self, ip: int, owners: dict[int, list[int]], mac: int) -> str:
        """Why ``ip`` is the gateway ("" if it is not): its owner forwards external traffic,
        or many hosts ask for it, or, before either is learnt, it is the conventional first
        or last host address of its /24."""
        gw = self._gateway_macs()
        if gw and mac not in gw and any(m in gw for m in owners):
            return "its owner forwards the LAN's external traffic"
        askers: dict[int, set[int]] = {}
        for a, asked in self.requests:
            askers.setdefault(asked, set()).add(a)
        n = len(askers.get(ip, ()))
        if n >= 3 and n == max(len(v) for v in askers.values()):
            return f"more hosts ask for it than for any other address ({n})"
        rivals = [m for m in owners if m != mac]
        if (ip & 255) in (1, 254) and all(m in gw for m in rivals):
            return "conventional gateway address of its /24, no other owner seen"
        return ""

    def advance(self, now_ns: int) -> list[Alert]:
        self._tick(now_ns)
        if not self._pending:
            return []
        a = np.concatenate(self._pending)
        self._pending = []
        a = a[np.argsort(a["ts_ns"], kind="stable")]
        sip = _ipv4_u32(a["sender_ip"])
        tip = _ipv4_u32(a["target_ip"])
        smac = mac_u64(a["sender_mac"])
        tmac = mac_u64(a["target_mac"])
        op = a["op"].astype(np.uint64)
        grat = (sip == tip) | (tmac == BROADCAST)
        # distinct claims in first-seen order (a flood of one packet is one claim)
        claim = np.stack([op, sip.astype(np.uint64), smac, tip.astype(np.uint64),
                          grat.astype(np.uint64), a["vlan"].astype(np.uint64)], axis=1)  # fmt: skip
        _, first, inv, cnt = np.unique(claim, axis=0, return_index=True, return_inverse=True,
                                       return_counts=True)  # fmt: skip
        last_ts = np.zeros(len(first), np.int64)
        np.maximum.at(last_ts, inv.reshape(-1), a["ts_ns"].astype(np.int64))
        out: list[Alert] = []
        for i in np.argsort(first, kind="stable"):
            r = int(first[i])
            al = self._claim(int(op[r]), int(sip[r]), int(smac[r]), int(tip[r]), bool(grat[r]),
                             int(a["vlan"][r]), int(a["ts_ns"][r]), int(last_ts[i]), int(cnt[i]))  # fmt: skip
            if al is not None:
                out.append(al)
        self._trim()
        return out

    def _claim(self, op: int, ip: int, mac: int, target: int, grat: bool, vlan: int,
               ts: int, last: int, n: int) -> Alert | None:  # fmt: skip
        if op == 1:
            self.requests[(ip, target)] = last
        if ip == 0 or mac in (0, BROADCAST):
            return None  # ARP probe (RFC 5227): no claim
        unsolicited = False
        if op == 2 and not grat:
            asked = self.requests.get((target, ip))
            unsolicited = asked is None or ts - asked > self.SOLICIT_S * NS
        owners = self.owners.setdefault(ip, {})
        others = {m: v for m, v in owners.items() if m != mac and ts - v[1] <= self.LIVE_S * NS}
        mine = self.mac_ips.get(mac, {})
        other_ips = [p for p, t in mine.items()
                     if p != ip and ts - t <= self.LIVE_S * NS and p >> 16 != 0xA9FE]  # fmt: skip
        known = sum(v[2] for p in mine for v in [self.owners.get(p, {}).get(mac, [0, 0, 0])])
        sub = ip >> 8
        seg = self.subnets.setdefault(vlan, {})
        subnet_hosts = seg.get(sub, set()) - {mac}
        alert = None
        gateway = unsolicited and self._is_gateway(ip, owners, mac)
        gw = self._gateway_macs() if others else set()
        takeover = bool(others) and mac not in gw and (
            bool(other_ips) or any(m in gw for m in others))  # fmt: skip
        if (unsolicited and (others or other_ips or gateway)) or takeover:
            why = ["unsolicited unicast ARP reply"] if unsolicited else [
                "claims an address another live MAC holds"]  # fmt: skip
            if others:
                why.append(f"{_ip(ip)} belongs to {mac_str(next(iter(others)))}")
            if other_ips:
                why.append(f"the MAC also claims {', '.join(_ip(p) for p in other_ips[:3])}")
            if gateway:
                why.append(f"{_ip(ip)} is the gateway ({gateway})")
            alert = self._alert(
                "arp_spoofing", mac, [_ip(target), _ip(ip)], 55 + 12 * (len(why) - 1), ts,
                f"{mac_str(mac)} sent {n} {'unsolicited ARP repl' if unsolicited else 'ARP claim'}"
                f"{('y' if unsolicited else '') if n == 1 else ('ies' if unsolicited else 's')} "
                f"telling {_ip(target)} that {_ip(ip)} is at {mac_str(mac)} ({'; '.join(why)})",
                {"claimed_ip": _ip(ip), "told": _ip(target), "replies": n,
                 "reference": "a reply normally answers a request seen within "
                 f"{self.SOLICIT_S:.0f} s", "signals": why,
                 "previous_owner": mac_str(next(iter(others))) if others else None},
                "T1557.002",
            )  # fmt: skip
        elif (
            others
            and not other_ips
            and not any(
                p != ip and ts - t <= self.LIVE_S * NS
                for m in others
                for p, t in self.mac_ips.get(m, {}).items()
            )
        ):
            prev = next(iter(others))
            if ts - others[prev][1] <= self.CONFLICT_S * NS:
                alert = self._alert(
                    "ip_conflict", mac, [_ip(ip), mac_str(prev)], 35, ts,
                    f"{_ip(ip)} is answered by two devices, {mac_str(prev)} and {mac_str(mac)} "
                    "(each claims only this address and answers normally: a duplicated "
                    "address, not spoofing)",
                    {"ip": _ip(ip), "macs": [mac_str(prev), mac_str(mac)],
                     "first_owner_last_heard_s_ago": (ts - others[prev][1]) / NS,
                     "reference": "one MAC per address"},
                    "",
                )  # fmt: skip
        elif (
            known >= self.KNOWN_AFTER
            and ip not in mine
            and not subnet_hosts
            and ip >> 16 != 0xA9FE  # link-local is valid on every segment
            and any(ms - {mac} for ms in seg.values())
        ):
            prev_ips = sorted(mine, key=lambda p: -mine[p])
            alert = self._alert(
                "address_misconfig", mac, [_ip(ip)], 30, ts,
                f"known device {mac_str(mac)} (was {_ip(prev_ips[0])}) now uses {_ip(ip)}, "
                "outside every subnet seen on its segment",
                {"ip": _ip(ip), "previous_ips": [_ip(p) for p in prev_ips[:3]],
                 "segment_subnets": sorted(f"{_ip(s << 8)}/24" for s in seg if seg[s] - {mac}),
                 "reference": "addresses of a segment share its subnets"},
                "",
            )  # fmt: skip
        # learn (an alerted claim is not learnt as the owner, nor anything a spoofer says)
        if alert is not None and alert.kind == "arp_spoofing":
            self._spoofers[mac] = ts
            owners.pop(mac, None)
            self.mac_ips.get(mac, {}).pop(ip, None)
        elif ts - self._spoofers.get(mac, -(1 << 62)) > self.REPEAT_S * NS:
            v = owners.setdefault(mac, [ts, last, 0])
            v[1] = max(v[1], last)
            v[2] += n
            self.mac_ips.setdefault(mac, {})[ip] = last
            if alert is None:
                seg.setdefault(sub, set()).add(mac)
        return alert

    def _alert(self, kind: str, mac: int, victims: list[str], score: float, ts: int,
               summary: str, evidence: dict[str, Any], mitre: str) -> Alert | None:  # fmt: skip
        att = mac_str(mac)
        key = victims[0] if kind == "ip_conflict" else att  # a conflict is about the address
        last = self._alerted.get((kind, key))
        if last is not None and self.now_ns - last < self.REPEAT_S * NS:
            return None
        self._alerted[(kind, key)] = self.now_ns
        conf = {"arp_spoofing": min(0.95, score / 100 + 0.2)}.get(kind, 0.7)
        return Alert(kind, att, victims, score, conf, ts / NS, self.now_ns / NS, mitre,
                     evidence, summary, self.name, self.version)  # fmt: skip

    def _trim(self) -> None:
        cut = max(self.requests.values(), default=0) - int(4 * self.LIVE_S * NS)
        if len(self.requests) > 50_000:
            self.requests = {k: t for k, t in self.requests.items() if t >= cut}
        if len(self.owners) > 50_000:
            self.owners = {
                ip: o for ip, o in self.owners.items() if max(v[1] for v in o.values()) >= cut
            }

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["owners"] = [[ip, m, *v] for ip, o in self.owners.items() for m, v in o.items()]
        d["subnets"] = [[vl, s, sorted(ms)] for vl, seg in self.subnets.items()
                        for s, ms in seg.items()]  # fmt: skip
        d["next_hop"] = [[m, c] for m, c in self.next_hop.items()]
        d["requests"] = [[a, b, t] for (a, b), t in self.requests.items()]
        d["spoofers"] = [[m, t] for m, t in self._spoofers.items()]
        d["alerted"] = [[k, a, t] for (k, a), t in self._alerted.items()]
        pend = np.concatenate(self._pending) if self._pending else np.zeros(0, ARP_DTYPE)
        d["pending"] = pend.view(np.uint8).copy()
        return d

    def load_state(self, d: dict[str, Any]) -> None:
        super().load_state(d)
        self.owners, self.mac_ips = {}, {}
        for ip, m, first, last, n in d.get("owners", []):
            self.owners.setdefault(int(ip), {})[int(m)] = [int(first), int(last), int(n)]
            self.mac_ips.setdefault(int(m), {})[int(ip)] = int(last)
        self.subnets = {}
        for vl, s, ms in d.get("subnets", []):
            self.subnets.setdefault(int(vl), {})[int(s)] = {int(m) for m in ms}
        self.next_hop = {int(m): int(c) for m, c in d.get("next_hop", [])}
        self.requests = {(int(a), int(b)): int(t) for a, b, t in d.get("requests", [])}
        self._spoofers = {int(m): int(t) for m, t in d.get("spoofers", [])}
        self._alerted = {(str(k), str(a)): int(t) for k, a, t in d.get("alerted", [])}
        pend = np.asarray(d.get("pending", np.zeros(0, np.uint8)), np.uint8).view(ARP_DTYPE)
        self._pending = [pend.copy()] if len(pend) else []
