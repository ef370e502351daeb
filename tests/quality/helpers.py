"""Helpers for the quality commands' tests: label rows from the shared corpus (read at
test time) and the ``netwarden`` entry point run in-process (replays are cached per
process, so captures the detection tests already replayed cost nothing here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netwarden.cli import main
from netwarden.quality.labels import BENIGN, read_labels
from tests.conftest import CORPUS

ATTACKS = CORPUS / "attacks"
LABELS = ATTACKS / "LABELS.tsv"


def labels() -> list[dict[str, str]]:
    if not LABELS.is_file():
        pytest.skip("shared corpus missing")
    return read_labels(LABELS)


def smallest(kind: str | None = None, n: int = 1) -> list[dict[str, str]]:
    """The ``n`` labelled rows with the fewest packets (of class ``kind``; attacks when
    None): quick to replay."""
    rows = [r for r in labels() if (r["class"] == kind if kind else r["class"] != BENIGN)]
    return sorted(rows, key=lambda r: int(r.get("packets") or 0))[:n]


def write_labels(path: Path, rows: list[dict[str, str]]) -> Path:
    cols = list(rows[0])
    path.write_text("\t".join(cols) + "\n" + "".join(
        "\t".join(r[c] for c in cols) + "\n" for r in rows))  # fmt: skip
    return path


def run_cli(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, list[dict[str, Any]], str]:
    """(exit status, the JSON lines printed, stderr)."""
    rc = main(list(argv))
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines() if x.startswith("{")]
    return rc, lines, out.err
