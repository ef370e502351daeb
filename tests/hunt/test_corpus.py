"""The hunts on the labelled attack captures of the corpus (ground truth read from
``LABELS.tsv`` at test time): the labelled attacker tops the hunt for its class, and the
benign captures raise nothing of weight."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS
from tests.hunt.conftest import json_lines, run_nw

ATTACKS = CORPUS / "attacks"
#: labelled class -> (hunt, its JSON row type)
HUNT_OF = {"dns_tunneling": ("dns", "dns_candidate"), "port_scan": ("scans", "scan")}
#: a hunt row scoring this much is worth an analyst's look
WEIGHTY = 0.5


def labels() -> list[dict[str, str]]:
    path = ATTACKS / "LABELS.tsv"
    text = path.read_text().splitlines() if path.is_file() else []
    return list(csv.DictReader(text, delimiter="\t"))


def replayed(tmp_path: Path, capture: str) -> Path:
    state = tmp_path / "state"
    rc, _out, err = run_nw("replay", "--json", "--state-dir", str(state), str(ATTACKS / capture))
    assert rc == 0, err
    return state


def top(state: Path, hunt: str, kind: str) -> list[dict[str, Any]]:
    return [x for x in json_lines("hunt", hunt, "--state-dir", str(state)) if x["type"] == kind]


@pytest.mark.parametrize(
    "row", [r for r in labels() if r["class"] in HUNT_OF], ids=lambda r: r["file"]
)
def test_labelled_attacker_tops_its_hunt(row: dict[str, str], tmp_path: Path) -> None:
    hunt, kind = HUNT_OF[row["class"]]
    got = top(replayed(tmp_path, row["file"]), hunt, kind)
    assert got, f"{hunt} found nothing in {row['file']}"
    assert got[0]["src"] == row["attacker_ip"] and got[0]["score"] >= WEIGHTY


@pytest.mark.parametrize(
    "row", [r for r in labels() if r["class"] == "benign"], ids=lambda r: r["file"]
)
def test_benign_captures_raise_nothing_weighty(row: dict[str, str], tmp_path: Path) -> None:
    state = replayed(tmp_path, row["file"])
    for hunt, kind in [*HUNT_OF.values(), ("beacons", "beacon")]:
        assert all(r["score"] < WEIGHTY for r in top(state, hunt, kind)), hunt


def test_labels_are_present() -> None:
    if not labels():
        pytest.skip(f"corpus labels not found under {ATTACKS}")
    assert {r["class"] for r in labels()} >= set(HUNT_OF)
