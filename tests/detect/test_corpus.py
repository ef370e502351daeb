"""Every labelled capture in the shared attack corpus (``LABELS.tsv``, read at test time):
an alert of the labelled kind naming the labelled attacker (the victim for spoofed and
reflected attacks), raised within the deadline after the attack's first packet; nothing at
all on the benign captures. One test id per capture; the table is printed at the end.
Judged by ``netwarden.quality.evaluate``, the harness ``netwarden eval`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.detect.harness import deadline, judge_row, read_labels, replay_run

ATTACKS = CORPUS / "attacks"
LABELS = ATTACKS / "LABELS.tsv"


def _labels() -> list[dict[str, str]]:
    if not LABELS.is_file():
        return []
    return read_labels(LABELS)


def _id(label: dict[str, str]) -> str:
    return Path(label["file"]).stem


@pytest.mark.parametrize("label", _labels(), ids=_id)
def test_capture(label: dict[str, str], corpus_rows: list) -> None:
    path = ATTACKS / label["file"]
    if not path.is_file():
        pytest.skip(f"{path} missing")
    run = replay_run([path])  # cached: `netwarden eval` in the same run reuses it
    row = judge_row(label, run)
    corpus_rows.append(row.cells())
    assert not run.errors, f"detector errors: {run.errors}"
    if label["class"] == "benign":
        assert not run.alerts, [a.to_json() for a in run.alerts]
        return
    assert row.attributed and row.ttd_s is not None, row.verdict
    assert row.verdict == "ok", f"{row.verdict} (deadline {deadline(label['class'])} s)"
