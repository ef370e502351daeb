"""Every labelled capture in the shared attack corpus (``LABELS.tsv``, read at test time):
an alert of the labelled kind naming the labelled attacker (the victim for spoofed and
reflected attacks), raised within the deadline after the attack's first packet; nothing at
all on the benign captures. One test id per capture; the table is printed at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.detect.harness import deadline, judge, read_labels, run_captures

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
    run = run_captures([path])
    name = _id(label)
    assert not run.errors, f"detector errors: {run.errors}"
    if label["class"] == "benign":
        got = ", ".join(f"{a.kind}:{a.attacker or a.victims[:1]}" for a in run.alerts)
        corpus_rows.append((name, "nothing", got or "nothing", "-",
                            "ok" if not run.alerts else "FALSE POSITIVE"))  # fmt: skip
        assert not run.alerts, [a.to_json() for a in run.alerts]
        return
    alert, why = judge(label, run)
    start = run.t_first + float(label["attack_start_s"] or 0)
    expected = f"{label['class']} {label['attacker_ip'].split(' (')[0][:24]}"
    got = f"{alert.kind} {alert.attacker or '(victim ' + alert.victims[0] + ')'}" if alert else "-"
    ttd = f"{alert.detected_at - start:.2f} s" if alert else "-"
    corpus_rows.append((name, expected, got, ttd, why))
    assert alert is not None, why
    assert why == "ok", f"{why} (deadline {deadline(label['class'])} s)"
