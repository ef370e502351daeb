"""``netwarden report``: a self-contained HTML file from a replay's state dir and from a
running controller's, rendered in headless Chromium and checked by the page's text."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "pcaps"))
import generate

from tests.integration.controller_proc import ControllerProcess
from tests.jsonl import jsonl

SCANNER = generate.SCANNER[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def nw(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skip = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def page_text(html_text: str) -> str:
    p = _Text()
    p.feed(html_text)
    return " ".join(" ".join(p.parts).split())


def chromium(args: list[str], cwd: Path) -> str:
    assert CHROMIUM
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={cwd / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("report")
    pcap = d / "demo.pcap"
    generate.build().write(pcap)
    state = d / "state"
    nw(
        "replay",
        "--state-dir",
        str(state),
        "--config",
        str(REPO / "pcaps" / "demo.toml"),
        str(pcap),
    )
    incidents = jsonl(nw("incidents", "--json", "--state-dir", str(state)).stdout, "incident")
    alerts = jsonl(nw("alerts", "--json", "--state-dir", str(state)).stdout, "alert")
    return {"dir": d, "pcap": pcap, "state": state, "incidents": incidents, "alerts": alerts}


def _self_contained(html_text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html_text)
    assert "<script" not in html_text and "<link" not in html_text and "@import" not in html_text
    assert "http://" not in html_text.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make sysdeps installs it)")
def test_report_of_a_replay_renders_in_chromium(replayed: dict[str, Any]) -> None:
    out = replayed["dir"] / "report.html"
    msg = nw("report", "--state-dir", str(replayed["state"]), "-o", str(out)).stdout
    assert msg.startswith(f"wrote {out}") and f"{len(replayed['incidents'])} incidents" in msg
    html_text = out.read_text()
    _self_contained(html_text)
    assert html_text.count("<svg") == 3  # traffic, top talkers, alerts by kind
    dom = chromium(["--dump-dom", out.as_uri()], replayed["dir"])
    text = page_text(dom)
    assert "NetWarden report" in text and "DRY RUN: nothing was enforced" in text
    for section in (
        "Traffic timeline",
        "Top talkers",
        "Alerts over time",
        "Incidents",
        "Bans",
        "Approvals",
    ):
        assert section in text
    for inc in replayed["incidents"]:
        assert f"{inc['id']} {inc['priority']} {', '.join(inc['kinds'])}" in text
        assert " ".join(inc["text"].split()) in text  # the summary, whole
    # chart text is text (svg.fonttype none): incident markers, the scanner, kinds in the legend
    scan = next(i for i in replayed["incidents"] if SCANNER in i["attackers"])
    assert f"{scan['id']} {scan['priority']}" in text and SCANNER in text
    for kind in {a["kind"] for a in replayed["alerts"]}:
        n = sum(1 for a in replayed["alerts"] if a["kind"] == kind)
        assert f"{kind} ({n})" in text
    # the demo config asks approval to block the scanner (internal host): listed as pending
    assert re.search(rf"d-[0-9a-f]{{12}} \S+ \S+ pending {re.escape(SCANNER)}", text), text[-3000:]
    shot = replayed["dir"] / "report.png"
    chromium(["--window-size=1200,2400", f"--screenshot={shot}", out.as_uri()], replayed["dir"])
    assert shot.stat().st_size > 50_000  # a rendered page with charts, not a blank one


def test_report_since_keeps_the_later_alerts(replayed: dict[str, Any]) -> None:
    out = replayed["dir"] / "late.html"
    nw("report", "--state-dir", str(replayed["state"]), "--since", "30s", "-o", str(out))
    text = page_text(out.read_text())
    latest = max(
        max(i["updated_at"] for i in replayed["incidents"]),
        max(a["detected_at"] for a in replayed["alerts"]),
    )
    kept = [a for a in replayed["alerts"] if a["detected_at"] >= latest - 30]
    assert 0 < len(kept) < len(replayed["alerts"])
    assert f", {len(kept)} alerts," in text
    assert "port_scan (" not in text  # the scan came earlier


def test_report_of_a_running_controller(replayed: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    cfg = tmp_path / "nw.toml"
    cfg.write_text("[safety]\ndiscover_local = false\n[policy]\ndetectors = { port_scan = 3 }\n"
                   "internal_networks = [\"10.0.0.0/8\"]\n")  # fmt: skip
    state = tmp_path / "state"
    ctl = ControllerProcess(state, cfg, "--enforce", "dryrun", "--listen", endpoint)
    try:
        nw("sensor", "--pcap", str(replayed["pcap"]), "--connect", endpoint, "--sensor-id", "s-rep")
        out = tmp_path / "live.html"
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            nw("report", "--state-dir", str(state), "-o", str(out))
            text = page_text(out.read_text())
            if SCANNER in text and "port_scan" in text:
                break
            time.sleep(0.5)
        assert (
            "Traffic timeline" in text and "No flow records" not in text
        )  # drawn from the archive
        assert re.search(r"INC-\d+ P\d [a-z_, ]*port_scan", text) and f"{SCANNER} drop 600s" in text
        _self_contained(out.read_text())
    finally:
        assert ctl.stop() == 0
