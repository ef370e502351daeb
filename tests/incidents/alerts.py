"""Crafted alerts for the incident tests: the shapes the detectors emit (kind, attacker,
victims, score, confidence, times, evidence with a learnt reference and a threshold)."""

from __future__ import annotations

from typing import Any

from controller.detect.alert import Alert

T0 = 1_700_000_000.0
ATTACKER = "203.0.113.5"
SERVER = "10.0.0.5"
C2 = "198.51.100.7"

MITRE = {"port_scan": "T1046", "ssh_bruteforce": "T1110", "c2_beaconing": "T1071", "syn_flood": "T1498.001",
         "host_sweep": "T1018", "dns_tunneling": "T1071.004"}  # fmt: skip


def alert(kind: str, attacker: str | None, victims: list[str], score: float, conf: float, t: float,
          evidence: dict[str, Any] | None = None, first: float | None = None) -> Alert:  # fmt: skip
    return Alert(kind, attacker, victims, score, conf, T0 + (t if first is None else first), T0 + t,
                 MITRE.get(kind, ""), evidence or {}, f"{kind} by {attacker}", f"test_{kind}", "1")  # fmt: skip


def scan(t: float = 0.0, attacker: str = ATTACKER, victim: str = SERVER, score: float = 70.0,
         conf: float = 0.8) -> Alert:  # fmt: skip
    return alert("port_scan", attacker, [victim], score, conf, t, {
        "distinct_dst_ports": 106, "window_s": 1.0, "threshold": 20, "learnt_reference": 3.24,
        "syn_sent": 212, "scan_type": "TCP SYN"})  # fmt: skip


def brute(t: float = 60.0, attacker: str = ATTACKER, victim: str = SERVER, score: float = 75.0,
          conf: float = 0.85) -> Alert:  # fmt: skip
    return alert("ssh_bruteforce", attacker, [victim], score, conf, t, {
        "failed_logins": 240, "dst_port": 22, "window_s": 60.0, "threshold": 30, "learnt_reference": 0.5})  # fmt: skip


def beacon(
    t: float = 600.0, host: str = SERVER, peer: str = C2, score: float = 70.0, conf: float = 0.8
) -> Alert:
    return alert("c2_beaconing", host, [peer], score, conf, t, {
        "connections": 48, "interval_s": 30.0, "interval_regularity": 0.97, "size_regularity": 0.93,
        "threshold": 0.8})  # fmt: skip


def flood(t: float = 0.0, victim: str = SERVER, score: float = 95.0, conf: float = 0.95) -> Alert:
    return alert("syn_flood", None, [victim], score, conf, t, {
        "syn_pps": 48000.0, "distinct_sources": 9000, "learnt_reference": 12.5, "threshold": 1000})  # fmt: skip
