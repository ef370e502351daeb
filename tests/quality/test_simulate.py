"""``netwarden simulate``: a planted policy difference shows, with its blast radius. Two
configs differ only in the autonomy level for port scans; the candidate also forgot the
scanner's network in ``internal_networks``: it would block an internal scanner that the
current config only recommends, and simulate says who would be hurt."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from netwarden.quality.labels import first_address
from tests.quality.helpers import ATTACKS, labels, run_cli

# both: contain on any scan incident, so only the level decides
COMMON = """
[copilot]
contain_risk = 10
investigate_risk = 5
contain_confidence = 0.1
[policy.thresholds]
3 = { score = 10, confidence = 0.1 }
2 = { score = 10, confidence = 0.1 }
"""


def _internal_scanner() -> tuple[Path, str]:
    rows = [r for r in labels() if r["class"] == "port_scan"]
    for r in sorted(rows, key=lambda r: int(r.get("packets") or 0)):
        addr = first_address(r["attacker_ip"])
        if addr and ipaddress.ip_address(addr).is_private:
            return ATTACKS / r["file"], addr
    pytest.skip("no internal scanner in the corpus labels")


def test_planted_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture, scanner = _internal_scanner()
    current = tmp_path / "current.toml"
    current.write_text("[policy]\ndetectors = { port_scan = 1 }\n" + COMMON)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(
        '[policy]\ninternal_networks = ["fd00::/8"]\ndetectors = { port_scan = 3 }\n' + COMMON
    )
    rc, lines, err = run_cli(capsys, "simulate", "--config", str(candidate), "--current",
                             str(current), str(capture), "--json")  # fmt: skip
    assert rc == 0, err
    diffs = {x["target"]: x for x in lines if x["type"] == "difference"}
    d = diffs[scanner]
    assert (d["current"], d["candidate"]) == ("recommend", "block")
    radius = d["blast_radius"]
    assert radius["internal"] and radius["peers"] >= 1 and radius["flows"] >= 1
    assert any(h.startswith("internal host") for h in radius["harms"])
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["differences"] == len(diffs)

    # the human view says the same; the same config twice shows no difference
    rc, _, _ = run_cli(capsys, "simulate", "--config", str(candidate), "--current",
                       str(current), str(capture))  # fmt: skip
    rc, lines, _ = run_cli(capsys, "simulate", "--config", str(current), "--current",
                           str(current), str(capture), "--json")  # fmt: skip
    assert lines[-1]["differences"] == 0
    assert any(x["type"] == "effect" and x["target"] == scanner for x in lines)


def test_human_output_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netwarden.cli import main

    capture, scanner = _internal_scanner()
    cand = tmp_path / "candidate.toml"
    cand.write_text('[policy]\ninternal_networks = ["fd00::/8"]\ndetectors = { port_scan = 3 }\n'
                    + COMMON)  # fmt: skip
    assert main(["simulate", "--config", str(cand), str(capture)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and scanner in out and "blast radius: internal host" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\ndefault_levle = 2\n")
    rc, _, err = run_cli(capsys, "simulate", "--config", str(bad), str(capture))
    assert rc != 0 and "default_levle" in err and len(err.strip().splitlines()) == 1
