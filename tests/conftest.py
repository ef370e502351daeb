"""Shared fixtures: corpus locations and backend parametrisation (ids ``py`` / ``c``)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NETWARDEN_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
ZEEK_CORPUS = CORPUS / "zeek"
MALFORMED_CORPUS = CORPUS / "malformed"


def c_backend_missing() -> str | None:
    """Why the compiled backend cannot be tested, or None when it can."""
    try:
        mod = importlib.import_module("sensor._fastpath")
    except ImportError as exc:
        return f"sensor._fastpath not built ({exc})"
    if not hasattr(mod, "FlowEngine"):
        return "sensor._fastpath has no FlowEngine yet"
    return None


BACKEND_PARAMS = [
    pytest.param("py", id="py"),
    pytest.param(
        "c",
        id="c",
        marks=pytest.mark.skipif(c_backend_missing() is not None, reason=str(c_backend_missing())),
    ),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend(backend_name: str):
    from sensor.engine import load_backend

    return load_backend(backend_name)


@pytest.fixture(scope="session")
def zeek_corpus() -> Path:
    if not (ZEEK_CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"Zeek corpus not found at {ZEEK_CORPUS} (set NETWARDEN_SHARED)")
    return ZEEK_CORPUS


@pytest.fixture(scope="session")
def malformed_corpus() -> Path:
    if not (MALFORMED_CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"malformed corpus not found at {MALFORMED_CORPUS} (set NETWARDEN_SHARED)")
    return MALFORMED_CORPUS
