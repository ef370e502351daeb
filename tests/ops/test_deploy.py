"""deploy/systemd units: hardening (capabilities limited to capture and netlink, no new
privileges, read-only system), and ExecStart lines that the netwarden CLI accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netwarden.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (repeated keys kept in order; continuation lines joined)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def _argv(exec_start: str) -> list[str]:
    text = (
        exec_start.replace("%i", "eth1")
        .replace("%H", "edge1")
        .replace("${CONTROLLER}", "tcp://127.0.0.1:5555")
    )
    argv = shlex.split(text)
    assert argv[0] == "/usr/local/bin/netwarden"
    return argv[1:]


@pytest.mark.parametrize(
    ("unit", "caps", "command"),
    [
        ("netwarden-controller.service", {"CAP_NET_ADMIN"}, "controller"),
        ("netwarden-sensor@.service", {"CAP_NET_RAW", "CAP_NET_ADMIN"}, "sensor"),
    ],
)
def test_unit_is_hardened_and_runs_a_real_command(unit: str, caps: set[str], command: str) -> None:
    u = parse_unit(UNITS / unit)
    svc = u["Service"]
    assert set(svc["CapabilityBoundingSet"][0].split()) == caps
    assert set(svc["AmbientCapabilities"][0].split()) == caps
    assert svc["User"] == ["netwarden"] and svc["NoNewPrivileges"] == ["yes"]
    assert (
        svc["ProtectSystem"] == ["strict"]
        and svc["ProtectHome"] == ["yes"]
        and svc["PrivateTmp"] == ["yes"]
    )
    assert (
        svc["RestrictNamespaces"] == ["yes"] and "AF_NETLINK" in svc["RestrictAddressFamilies"][0]
    )
    assert ("AF_PACKET" in svc["RestrictAddressFamilies"][0]) == (command == "sensor")
    assert any(v.startswith("~") and "@privileged" in v for v in svc["SystemCallFilter"])
    assert u["Install"]["WantedBy"] == ["multi-user.target"]
    args = build_parser().parse_args(_argv(svc["ExecStart"][0]))  # exits on an unknown option
    assert args.command == command and args.log_json and args.metrics.startswith("127.0.0.1:")
    assert args.curve_keys  # sensors and controller authenticate each other
    if command == "sensor":
        assert (
            args.iface == "eth1"
            and args.connect == "tcp://127.0.0.1:5555"
            and args.sensor_id == "edge1-eth1"
        )
    else:
        assert args.config == "/etc/netwarden/netwarden.toml" and args.listen == [
            "tcp://0.0.0.0:5555"
        ]
        assert (
            args.enforce is None
        )  # enforcement comes from the config: dry run until changed there
        pre = build_parser().parse_args(_argv(svc["ExecStartPre"][0]))
        assert pre.command == "config" and pre.file == args.config
        assert svc["ReadWritePaths"] == ["/var/lib/netwarden"] and svc["StateDirectory"] == [
            "netwarden"
        ]


def test_deploy_doc_covers_the_setups() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    for unit in ("netwarden-controller.service", "netwarden-sensor@.service"):
        assert unit in doc
    for topic in ("SPAN", "several sensors", "CURVE", "netwarden keygen", "dry run", "dryrun.jsonl",
                  "autonomy", "default_level", "netwarden config check", "netwarden status", "--metrics"):  # fmt: skip
        assert topic.lower() in doc.lower(), topic


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("netwarden")  # the installed path does not exist here
    names = []
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/local/bin/netwarden", str(exe))
        name = unit.name.replace("@.", "@eth1.")  # an instance of the template
        (tmp_path / name).write_text(text)
        names.append(f"./{name}")
    proc = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", (
        proc.stderr
    )  # unknown keys are only warnings: none allowed
