"""One backend picker for every component with a compiled and a reference implementation."""

from __future__ import annotations

import pytest

from netwarden.errors import ConfigError
from sensor import engine, telemetry
from sensor.engine import BACKEND_ENV, pick_backend


def test_env_forces_the_reference_for_engine_and_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "py")
    assert engine.load_backend().__name__ == "sensor.engine.reference.fastpath"
    assert telemetry.load_backend().__name__ == "sensor.telemetry.reference"


def test_unknown_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "fortran")
    for load in (engine.load_backend, telemetry.load_backend):
        with pytest.raises(ConfigError, match=BACKEND_ENV):
            load()


def test_falls_back_when_the_compiled_module_lacks_what_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    # "c" names a module that imports but has no such class: the reference is used.
    backends = {"c": "netwarden.records.schema", "py": "sensor.telemetry.reference"}
    assert pick_backend(backends, needs="NoSuchThing").__name__ == "sensor.telemetry.reference"
    assert pick_backend(backends).__name__ == "netwarden.records.schema"
    missing = {"c": "sensor._no_such_module", "py": "sensor.telemetry.reference"}
    assert pick_backend(missing).__name__ == "sensor.telemetry.reference"
