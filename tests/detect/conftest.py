"""Collects the corpus results and prints them as one table at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

#: rows appended by test_corpus: (capture, expected, got, time to detect, verdict)
CORPUS_ROWS: list[tuple[str, str, str, str, str]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not CORPUS_ROWS:
        return
    tr = terminalreporter
    head = ("capture", "expected", "got", "time to detect", "verdict")
    rows = sorted(CORPUS_ROWS)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    tr.write_sep("-", "detection corpus")
    for r in [head, *rows]:
        tr.write_line("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


@pytest.fixture(scope="session")
def corpus_rows() -> list[tuple[str, str, str, str, str]]:
    return CORPUS_ROWS
