"""``netwarden config check``: the shipped sample passes and documents every key; unknown
keys and wrong types are refused with the key named and a non-zero exit."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from netwarden.config_check import SCHEMA, check_data

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "docs" / "netwarden.sample.toml"


def nw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netwarden", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, check=False)  # fmt: skip


def _keys(spec: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in spec.items():
        if k == "*":
            continue
        out.append(f"{prefix}{k}")
        if isinstance(v, dict):
            out.extend(_keys(v, f"{prefix}{k}."))
        elif isinstance(v, list) and isinstance(v[0], dict):
            out.extend(_keys(v[0], f"{prefix}{k}."))
    return out


def test_sample_config_passes_check() -> None:
    out = nw("config", "check", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{SAMPLE}: ok"


def test_sample_config_mentions_every_option_with_a_comment() -> None:
    text = SAMPLE.read_text()
    sections = set(re.findall(r"^#? ?\[\[?([\w.]+)\]\]?", text, re.MULTILINE))
    for key in _keys(SCHEMA):
        *parents, leaf = key.split(".")
        if not parents:
            assert key in sections, f"section [{key}] missing from the sample"
            continue
        line = next((x for x in text.splitlines() if re.match(rf"^#? *{leaf} *=", x)), None)
        if line is None and ".".join(parents + [leaf]) in sections:
            continue
        assert line is not None, f"{key} missing from the sample"
    # each active key line carries a comment, or the next line continues one
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if re.match(r"^\w+ *=", ln) and "#" not in ln:
            assert re.match(r"^ +#", lines[i + 1]), f"no comment for: {ln}"


def test_sample_values_are_the_defaults() -> None:
    from controller import config as ccfg
    from controller.incidents import config as tcfg

    data = tomllib.loads(SAMPLE.read_text())
    data["controller"].pop("state_dir")  # the default comes from the environment
    data["policy"]["detectors"] = {}
    assert ccfg.from_dict(data, state_dir="/x") == ccfg.from_dict({}, state_dir="/x")
    assert tcfg.from_dict(data) == tcfg.from_dict({})


@pytest.mark.parametrize(
    ("toml", "key", "what"),
    [
        ("[policy]\ndefault_levle = 2\n", "policy.default_levle", "unknown key"),
        ("[controler]\nenforce = 'dryrun'\n", "controler", "unknown key"),
        ("[safety]\ndiscover_local = 'yes'\n", "safety.discover_local", "expected true or false"),
        (
            "[policy]\ndetectors = { port_scan = 7 }\n",
            "policy.detectors.port_scan",
            "autonomy level 0..3",
        ),
        ("[safety]\nallow = ['10.0.0.300/8']\n", "safety.allow", "expected a list of CIDRs"),
        (
            "[escalation]\nincident_after_s = '15m'\n",
            "escalation.incident_after_s",
            "expected a number",
        ),
        (
            "[[policy.asset_groups]]\nname = 'dmz'\nnetwork = ['192.0.2.0/24']\nlevel = 2\n",
            "policy.asset_groups[0].network",
            "unknown key",
        ),
        (
            "[controller]\nenforce = 'pf'\n",
            "enforce",
            "enforce must be one of nftables, iptables, dryrun",
        ),
        ("[copilot]\nlang = 'fr'\n", "copilot.lang", "copilot.lang must be one of en, ja"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, key: str, what: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    out = nw("config", "check", str(f))
    assert out.returncode == 1 and out.stdout == ""
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"{f}: {key}: ") and what in first, out.stderr


def test_every_problem_is_reported_at_once() -> None:
    probs = check_data({"policy": {"default_levle": 1, "busy_clients": "many"}, "sefety": {}})
    assert sorted(p.key for p in probs) == ["policy.busy_clients", "policy.default_levle", "sefety"]


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[policy\n")
    out = nw("config", "check", str(f))
    assert out.returncode == 1 and f"{f}: syntax: " in out.stderr
    out = nw("config", "check", str(tmp_path / "none.toml"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "none.toml" in out.stderr
