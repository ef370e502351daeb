"""What each alert kind means for an incident: its stage, whether it is victim-centric,
and the service it concerns.

Stages follow the attack lifecycle (ATT&CK tactics, coarsened): reconnaissance, initial
access, command and control, exfiltration, impact, plus interception (ARP spoofing) and
operations (problems of the network, not attacks). The first four form the kill chain
whose progression on one host raises an incident's priority.
"""

from __future__ import annotations

from typing import Any

RECONNAISSANCE = "reconnaissance"
INITIAL_ACCESS = "initial_access"
COMMAND_AND_CONTROL = "command_and_control"
EXFILTRATION = "exfiltration"
IMPACT = "impact"
INTERCEPTION = "interception"
OPERATIONS = "operations"
OTHER = "other"

#: kind -> stage (``*_bruteforce`` kinds are initial access, see ``stage_of``)
STAGE_OF_KIND: dict[str, str] = {
    "port_scan": RECONNAISSANCE,
    "host_sweep": RECONNAISSANCE,
    "os_fingerprint": RECONNAISSANCE,
    "c2_beaconing": COMMAND_AND_CONTROL,
    "dns_tunneling": COMMAND_AND_CONTROL,
    "data_exfiltration": EXFILTRATION,
    "dns_exfiltration": EXFILTRATION,
    "syn_flood": IMPACT,
    "udp_amplification": IMPACT,
    "dns_amplification": IMPACT,
    "tcp_reflection": IMPACT,
    "icmp_flood": IMPACT,
    "arp_spoofing": INTERCEPTION,
    "ip_conflict": OPERATIONS,
    "address_misconfig": OPERATIONS,
    "traffic_anomaly": OPERATIONS,
}

#: the kill chain, in order: progression along it on one host raises priority
KILL_CHAIN = (RECONNAISSANCE, INITIAL_ACCESS, COMMAND_AND_CONTROL, EXFILTRATION)

#: display order of every stage
STAGE_ORDER = (*KILL_CHAIN, IMPACT, INTERCEPTION, OPERATIONS, OTHER)

#: floods and reflection: sources are forged or are reflectors; the incident is about the
#: victim, and the response is a rate limit at the victim or upstream advice, never bans
VICTIM_CENTRIC = frozenset(
    {"syn_flood", "udp_amplification", "dns_amplification", "tcp_reflection", "icmp_flood"}
)

#: kinds whose "attacker" is the compromised inside host talking out (the host is the story)
OUTBOUND = frozenset({"c2_beaconing", "dns_tunneling", "data_exfiltration", "dns_exfiltration"})

#: kinds where the "attacker" is a device with a problem, not an adversary
NOT_ATTACKS = frozenset(k for k, s in STAGE_OF_KIND.items() if s == OPERATIONS)

_BRUTEFORCE = "_bruteforce"


def stage_of(kind: str) -> str:
    if kind.endswith(_BRUTEFORCE):
        return INITIAL_ACCESS
    return STAGE_OF_KIND.get(kind, OTHER)


def service_of(kind: str, evidence: dict[str, Any] | None = None) -> str:
    """The service an alert concerns: ``ssh`` for ``ssh_bruteforce``; else the evidence's
    ``service`` or destination port; ``*`` when none (a scan concerns no one service)."""
    if kind.endswith(_BRUTEFORCE):
        return kind[: -len(_BRUTEFORCE)]
    ev = evidence or {}
    for key in ("service", "dst_port", "port", "victim_port"):
        v = ev.get(key)
        if v not in (None, "", 0):
            return str(v)
    return "*"
