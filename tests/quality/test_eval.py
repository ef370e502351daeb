"""``netwarden eval``: on the shared corpus it gives the detection tests' verdicts (every
row of LABELS.tsv detected, attributed and in time; benign captures quiet), and a label
broken on purpose fails its row and the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwarden.quality.labels import BENIGN, deadline
from tests.quality.helpers import ATTACKS, LABELS, labels, run_cli, smallest, write_labels


def test_corpus_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    want = labels()
    rc, lines, _ = run_cli(capsys, "eval", str(LABELS), str(ATTACKS), "--json")
    rows = [x for x in lines if x["type"] == "row"]
    assert [r["file"] for r in rows] == [w["file"] for w in want]
    for r, w in zip(rows, want, strict=True):
        assert r["class"] == w["class"]
        assert r["passed"] and r["verdict"] == "ok", r
        if w["class"] == BENIGN:
            assert r["alerts"] == 0
        else:
            assert r["detected"] and r["attributed"]
            assert 0 <= r["time_to_detect_s"] <= deadline(w["class"]) == r["deadline_s"]
    overall = lines[-1]
    assert overall["type"] == "overall" and overall["passed"]
    attacks = sum(w["class"] != BENIGN for w in want)
    assert overall["attacks"] == overall["detected"] == overall["in_time"] == attacks
    classes = {x["class"] for x in lines if x["type"] == "class"}
    assert classes == {w["class"] for w in want}
    assert rc == 0


def test_broken_label_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = smallest(n=2)
    wrong = "192.0.2.250"  # TEST-NET-3: in no capture
    assert wrong not in bad["attacker_ip"] + bad["victim_ips"]
    broken = {**bad, "attacker_ip": wrong, "victim_ips": wrong}
    tsv = write_labels(tmp_path / "labels.tsv", [good, broken])
    rc, lines, _ = run_cli(capsys, "eval", str(tsv), str(ATTACKS), "--json",
                           "-o", str(tmp_path / "eval.html"))  # fmt: skip
    rows = {r["file"]: r for r in lines if r["type"] == "row"}
    assert rows[good["file"]]["passed"]
    assert not rows[bad["file"]]["passed"] and not rows[bad["file"]]["attributed"]
    assert rows[bad["file"]]["detected"]  # the right kind fired, naming someone else
    assert lines[-1]["rows_passed"] == 1 and not lines[-1]["passed"]
    assert rc == 1
    page = (tmp_path / "eval.html").read_text()
    assert "<svg" in page and Path(bad["file"]).stem in page and "<script" not in page


def test_benign_labelled_as_attack_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = smallest(BENIGN)[0]
    attack = smallest()[0]
    lie = {**quiet, "class": attack["class"], "attacker_ip": attack["attacker_ip"]}
    tsv = write_labels(tmp_path / "labels.tsv", [lie])
    rc, lines, _ = run_cli(capsys, "eval", str(tsv), str(ATTACKS), "--json")
    row = lines[0]
    assert row["type"] == "row" and not row["passed"] and not row["detected"]
    assert rc == 1


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.tsv").write_text("file\tclass\nx.pcap\tport_scan\n")
    rc, _, err = run_cli(capsys, "eval", str(tmp_path / "bad.tsv"), str(ATTACKS))
    assert rc != 0 and "missing column" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "eval", str(tmp_path / "none.tsv"), str(ATTACKS))
    assert rc != 0 and "none.tsv" in err


def test_benign_dir_judged_per_hour(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = smallest(BENIGN, n=2)
    tsv = write_labels(tmp_path / "labels.tsv", quiet[:1])
    bdir = tmp_path / "benign"
    bdir.mkdir()
    (bdir / "quiet.pcap").symlink_to(ATTACKS / quiet[1]["file"])
    rc, lines, _ = run_cli(capsys, "eval", str(tsv), str(ATTACKS), "--benign", str(bdir), "--json")
    rows = [x for x in lines if x["type"] == "row"]
    assert [r["class"] for r in rows] == [BENIGN, "benign (background)"]
    assert all(r["passed"] and r["alerts"] == 0 for r in rows)
    assert lines[-1]["benign_hours"] >= 2 and lines[-1]["benign_alerts_per_hour"] == 0
    assert rc == 0
