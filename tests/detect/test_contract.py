"""The detector contract, checked on every registered detector (``detector:check`` ids):

* determinism: the same stream gives the same alerts;
* state round trip: stopping half way, saving (through the stack's codec) and loading into
  a fresh instance gives the same alerts as one uninterrupted run;
* batch shapes: records cut into other batch sizes (one record, empty batches, unknown
  types) give the same alerts;
* no learning from flagged traffic: the same attack replayed hours later, after the
  detector saw it, is alerted again (it was not learnt as normal).

The streams are the record batches the sensor makes from the corpus captures on which the
detector alerts (recorded once per session), so each check exercises real alerts.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.detect import discover
from controller.detect.stack import dumps_state, loads_state
from tests.conftest import CORPUS
from tests.detect.harness import Event, feed, record_events

H = 3 * 3600 * 10**9


def stream(path: str) -> tuple[Event, ...]:
    return record_events(path)


@functools.cache
def streams_for(name: str) -> tuple[str, ...]:
    """Corpus attack captures on which detector ``name`` alerts on its own."""
    found = []
    for p in sorted((CORPUS / "attacks").glob("*/*.pcap")):
        if p.parent.name == "benign":
            continue
        if feed(make(name), stream(str(p))):
            found.append(str(p))
    return tuple(found)


def make(name: str) -> Any:
    return discover()[name]()


def _alerts(alerts: list) -> list[str]:
    return [json.dumps(a.to_json(), sort_keys=True) for a in alerts]


def shifted(events: tuple[Event, ...], by_ns: int) -> list[Event]:
    out: list[Event] = []
    for what, arg in events:
        if what == "adv":
            out.append(("adv", arg + by_ns))
            continue
        kind, b = arg
        b = b.copy()
        for f in b.dtype.names or ():
            if f.startswith("ts_") and f.endswith("_ns"):
                b[f] += by_ns
        out.append(("obs", (kind, b)))
    return out


def _stream_or_skip(name: str) -> tuple[Event, ...]:
    paths = streams_for(name)
    if not paths:
        pytest.skip(f"{name} raises nothing on the corpus captures")
    return stream(paths[0])


NAMES = sorted(discover())
CHECKS = ("determinism", "state_round_trip", "batch_shapes", "no_learning_from_flagged")


@pytest.mark.parametrize(
    ("name", "check"), [(n, c) for n in NAMES for c in CHECKS], ids=lambda v: v
)
def test_contract(name: str, check: str) -> None:
    if not (CORPUS / "attacks").is_dir():
        pytest.skip("attack corpus missing")
    cls = discover()[name]
    assert cls.name == name and str(cls.version)
    ev = _stream_or_skip(name)
    base = _alerts(feed(make(name), ev))
    assert base, "the stream was chosen because it alerts"
    if check == "determinism":
        assert _alerts(feed(make(name), ev)) == base
    elif check == "state_round_trip":
        half = len(ev) // 2
        first = make(name)
        got = feed(first, ev[:half])
        second = make(name)
        second.load_state(loads_state(dumps_state(first.state_dict())))
        got += feed(second, ev[half:])
        assert _alerts(got) == base
    elif check == "batch_shapes":
        det = make(name)
        det.observe("pktsum", np.zeros(4, np.uint8))  # not a record type it takes: ignored
        recut: list[Event] = []
        for what, arg in ev:
            if what == "adv":
                recut.append((what, arg))
                continue
            kind, b = arg
            recut.append(("obs", (kind, b[:0])))  # an empty batch
            for i in range(0, len(b), 7):  # and small ones
                recut.append(("obs", (kind, b[i : i + 7])))
        assert _alerts(feed(det, recut)) == base
    else:
        det = make(name)
        first = feed(det, ev)
        again = feed(det, shifted(ev, H))
        kinds = lambda alerts: sorted({(a.kind, a.attacker, tuple(a.victims)) for a in alerts})
        assert kinds(again) == kinds(first), "the attack was learnt as normal"


def test_every_detector_is_discovered() -> None:
    mods = {
        p.stem for p in (Path(__file__).parents[2] / "controller/detect/detectors").glob("*.py")
    }
    assert {"recon", "floods", "bruteforce"} <= mods
    assert {"scan", "os_fingerprint", "flood", "bruteforce"} <= set(NAMES)
