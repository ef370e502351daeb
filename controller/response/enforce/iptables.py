"""iptables + ipset backend for hosts without nftables; same contract as nftables.

Objects we own: ipsets ``nw-{allow,ban,limit,rng}{4,6}`` (rng: range bans, hash:net) and a chain ``NETWARDEN`` (in
``filter`` for input/forward, ``raw`` for prerouting) for iptables and ip6tables, plus one
jump into it at the top of the hook's built-in chain. Allow-listed sources ``RETURN`` from
our chain (they skip our bans but keep meeting the operator's own rules); banned ones are
dropped; rate-limited ones are dropped above a per-source ``hashlimit``.

Bulk changes go through ``ipset restore -exist`` (one process for thousands of elements;
``-exist`` makes deleting an absent element a no-op), the chain through
``iptables-restore --noflush`` so its rules are swapped in one commit.
"""

from __future__ import annotations

import ipaddress
import math
import shlex
import subprocess
import time
from collections.abc import Iterable, Sequence

from controller.response.enforce.base import (
    Action,
    ApplyResult,
    BanSpec,
    Enforcer,
    Hook,
    IPNetwork,
    KernelBan,
    Target,
    collapse,
    is_range,
    target,
)
from controller.response.enforce.netns import ns_command
from netwarden.errors import EnforcementError

CHAIN = "NETWARDEN"
#: The built-in chains our chain can hang from (table, chain).
HOOKS = (("filter", "INPUT"), ("filter", "FORWARD"), ("raw", "PREROUTING"))
#: ipset timeouts are whole seconds and capped by the kernel (UINT_MAX / 1000)
IPSET_MAX_TIMEOUT = 2_147_483
MAXELEM = 1 << 20


def _set(kind: str, version: int) -> str:
    return f"nw-{kind}{version}"


def _kind(action: Action, t: Target | None = None) -> str:
    if t is not None and is_range(t):
        if action is not Action.DROP:
            raise EnforcementError(f"{t}: ranges can be dropped, not rate-limited")
        return "rng"
    return "ban" if action is Action.DROP else "limit"


class IptablesEnforcer(Enforcer):
    name = "iptables"

    def __init__(
        self,
        hook: Hook = Hook.INPUT,
        *,
        limit_rate: int = 10,
        limit_burst: int = 20,
        netns: str | None = None,
    ) -> None:
        self.hook = Hook(hook)
        self.table = "raw" if self.hook is Hook.PREROUTING else "filter"
        self.builtin = self.hook.value.upper()
        self.limit_rate = limit_rate
        self.limit_burst = limit_burst
        self.netns = netns

    def _run(
        self, argv: list[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ns_command(self.netns, argv),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except FileNotFoundError as exc:
            raise EnforcementError(f"iptables backend: {argv[0]} not installed") from exc
        if check and proc.returncode != 0:
            raise EnforcementError(f"{' '.join(argv[:3])} failed: {proc.stderr.strip()[:300]}")
        return proc

    def _unhook(self, tool: str, table: str, builtin: str, drop_chain: bool) -> None:
        """Remove every jump to our chain from ``builtin`` (and the chain itself if asked)."""
        jump = [tool, "-w", "-t", table, "-D", builtin, "-j", CHAIN]
        while self._run(jump, check=False).returncode == 0:
            pass
        if drop_chain:
            self._run([tool, "-w", "-t", table, "-F", CHAIN], check=False)
            self._run([tool, "-w", "-t", table, "-X", CHAIN], check=False)

    def _drop_other_hooks(self, tool: str) -> None:
        """A changed hook: remove our jump and chain from the hook we used before."""
        for table, builtin in HOOKS:
            if (table, builtin) != (self.table, self.builtin):
                self._unhook(tool, table, builtin, drop_chain=table != self.table)

    def setup(self) -> None:
        lines = []
        for version, family in ((4, "inet"), (6, "inet6")):
            for kind in ("ban", "limit"):
                lines.append(
                    f"create {_set(kind, version)} hash:ip family {family} timeout 0 comment maxelem {MAXELEM} -exist"
                )
            lines.append(  # range bans: hash:net with per-entry timeouts
                f"create {_set('rng', version)} hash:net family {family} timeout 0 comment maxelem {MAXELEM} -exist"
            )
            lines.append(
                f"create {_set('allow', version)} hash:net family {family} maxelem {MAXELEM} -exist"
            )
        self._run(["ipset", "restore", "-exist"], "\n".join(lines) + "\n")
        for version, tool in ((4, "iptables"), (6, "ip6tables")):
            rules = [
                f"*{self.table}",
                f":{CHAIN} - [0:0]",  # with --noflush, declaring our chain flushes only it
                f"-A {CHAIN} -m set --match-set {_set('allow', version)} src -j RETURN",
                f"-A {CHAIN} -m set --match-set {_set('ban', version)} src -j DROP",
                f"-A {CHAIN} -m set --match-set {_set('rng', version)} src -j DROP",
                (
                    f"-A {CHAIN} -m set --match-set {_set('limit', version)} src -m hashlimit"
                    f" --hashlimit-above {self.limit_rate}/sec --hashlimit-burst {self.limit_burst}"
                    f" --hashlimit-mode srcip --hashlimit-name nw-limit{version} -j DROP"
                ),
                "COMMIT",
            ]
            self._run([f"{tool}-restore", "--noflush", "-w"], "\n".join(rules) + "\n")
            self._drop_other_hooks(tool)
            jump = ["-t", self.table, self.builtin, "-j", CHAIN]
            if self._run([tool, "-w", "-C", *jump], check=False).returncode != 0:
                self._run([tool, "-w", "-t", self.table, "-I", self.builtin, "1", "-j", CHAIN])
        self._verify_schema()

    def _verify_schema(self) -> None:
        for tool in ("iptables", "ip6tables"):
            out = self._run([tool, "-w", "-t", self.table, "-S", CHAIN]).stdout
            if out.count("--match-set") != 4:
                raise EnforcementError(f"{tool} read-back mismatch: chain {CHAIN} has {out!r}")
            head = self._run([tool, "-w", "-t", self.table, "-S", self.builtin]).stdout.splitlines()
            if len(head) < 2 or head[1].split()[-1] != CHAIN:
                raise EnforcementError(f"{tool}: jump to {CHAIN} is not first in {self.builtin}")

    def teardown(self) -> None:
        for tool in ("iptables", "ip6tables"):
            for table, builtin in HOOKS:
                self._unhook(tool, table, builtin, drop_chain=True)
        for kind in ("allow", "ban", "limit", "rng"):
            for version in (4, 6):
                self._run(["ipset", "destroy", _set(kind, version)], check=False)

    def apply(
        self, add: Sequence[BanSpec] = (), remove: Sequence[tuple[Target, Action]] = ()
    ) -> ApplyResult:
        t0 = time.perf_counter()
        adding = {(s.addr, s.action) for s in add}
        # ``add -exist`` already replaces timeout and comment: deleting first would open a
        # gap between the two restore lines
        lines = [
            f"del {_set(_kind(act, a), a.version)} {a}"
            for a, act in remove
            if (a, act) not in adding
        ]
        for spec in add:
            secs = (
                0 if spec.ttl_s is None else min(IPSET_MAX_TIMEOUT, max(1, math.ceil(spec.ttl_s)))
            )
            lines.append(
                f"add {_set(_kind(spec.action, spec.addr), spec.addr.version)} {spec.addr} timeout {secs}"
                f' comment "{spec.decision_id}"'
            )
        if lines:
            self._run(["ipset", "restore", "-exist"], "\n".join(lines) + "\n")
        present = {(b.addr, b.action) for b in self.list_bans()}
        final = {(a, act): False for a, act in remove}
        final.update({(s.addr, s.action): True for s in add})
        wrong = [
            f"{a} ({act})" for (a, act), want in final.items() if ((a, act) in present) != want
        ]
        if wrong:
            raise EnforcementError(
                f"ipset read-back mismatch for {len(wrong)} elements: {', '.join(wrong[:5])}"
            )
        return ApplyResult(len(add), len(remove), time.perf_counter() - t0)

    def _save(self, name: str) -> list[list[str]]:
        out = self._run(["ipset", "save", name]).stdout
        return [shlex.split(line) for line in out.splitlines() if line.startswith("add ")]

    def list_bans(self) -> list[KernelBan]:
        out: list[KernelBan] = []
        for kind, action in (
            ("ban", Action.DROP),
            ("limit", Action.RATE_LIMIT),
            ("rng", Action.DROP),
        ):
            for version in (4, 6):
                for fields in self._save(_set(kind, version)):
                    opts = dict(zip(fields[3::2], fields[4::2], strict=False))
                    secs = int(opts.get("timeout", "0"))
                    out.append(
                        KernelBan(
                            target(fields[2]),
                            action,
                            float(secs) if secs else None,
                            opts.get("comment", ""),
                        )
                    )
        return out

    def set_allow(self, networks: Iterable[IPNetwork]) -> None:
        """Fill a fresh set and swap it in, so the allow-list is never half-loaded."""
        v4, v6 = collapse(networks)
        lines = []
        for version, family, nets in ((4, "inet", v4), (6, "inet6", v6)):
            live, tmp = _set("allow", version), _set("allow", version) + "-new"
            lines.append(f"create {tmp} hash:net family {family} maxelem {MAXELEM} -exist")
            lines.append(f"flush {tmp}")
            lines.extend(f"add {tmp} {n}" for n in nets)
            lines.append(f"swap {tmp} {live}")
            lines.append(f"destroy {tmp}")
        self._run(["ipset", "restore", "-exist"], "\n".join(lines) + "\n")
        got = self.list_allow()
        if sorted(got, key=str) != sorted([*v4, *v6], key=str):
            raise EnforcementError(f"ipset allow-list read-back mismatch: {got}")

    def list_allow(self) -> list[IPNetwork]:
        nets: list[IPNetwork] = []
        for version in (4, 6):
            nets.extend(ipaddress.ip_network(f[2]) for f in self._save(_set("allow", version)))
        v4, v6 = collapse(nets)
        return [*v4, *v6]
