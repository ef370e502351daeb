"""join_batches: the batches of a tick are joined once and shared by every detector."""

from __future__ import annotations

import numpy as np

from controller.detect.base import batch_column, is_shared, join_batches, share_batch
from tests.detect.records import host, pairs


def _handed_out(*batches: np.ndarray) -> list[np.ndarray]:
    for b in batches:
        share_batch(b)  # as DetectionStack.observe does before fanning a batch out
    return list(batches)


def test_detectors_joining_the_same_batches_get_one_shared_array() -> None:
    parts = _handed_out(host("10.0.0.1", 0, out_pkts=3), host("10.0.0.2", 0, in_pkts=5),
                        host("2001:db8::7", 0.5, out_syn=9))  # fmt: skip
    first = join_batches(list(parts))  # one detector's list of pending batches
    second = join_batches(list(parts))  # another detector's list of the same batches
    assert second is first
    assert is_shared(first)
    assert batch_column(first, "out_pkts") is batch_column(second, "out_pkts")
    want = np.concatenate(parts)
    for name in want.dtype.names or ():
        assert np.array_equal(first[name], want[name]), name


def test_other_batches_or_batches_not_handed_out_are_joined_afresh() -> None:
    a, b, c = _handed_out(host("10.0.0.1", 0, out_pkts=1), host("10.0.0.2", 1, out_pkts=2),
                          host("10.0.0.3", 2, out_pkts=3))  # fmt: skip
    ab = join_batches([a, b])
    bc = join_batches([b, c])
    assert bc is not ab and list(bc["out_pkts"]) == [2, 3]
    assert join_batches([a, b]) is not ab  # only the latest join of a record type is kept
    loose = [host("10.0.0.4", 0, out_pkts=4), host("10.0.0.5", 0, out_pkts=5)]
    j1, j2 = join_batches(loose), join_batches(loose)
    assert j1 is not j2 and not is_shared(j1) and list(j1["out_pkts"]) == [4, 5]


def test_one_batch_is_returned_as_it_is_and_types_are_kept_apart() -> None:
    (h,) = _handed_out(host("10.0.0.1", 0))
    assert join_batches([h]) is h
    hs = _handed_out(host("10.0.0.1", 0), host("10.0.0.2", 0))
    ps = _handed_out(pairs("10.0.0.1", ["10.0.0.9"], 0), pairs("10.0.0.2", ["10.0.0.9"], 0))
    jh, jp = join_batches(hs), join_batches(ps)
    assert join_batches(hs) is jh and join_batches(ps) is jp  # one kept per record type
    assert len(jp) == 2 and jp.dtype == ps[0].dtype


def test_the_stack_lets_go_of_a_tick_s_joins_when_it_has_advanced() -> None:
    import gc
    import weakref

    from controller.detect import DetectionStack, build

    stack = DetectionStack(build())
    parts = [host(f"10.0.0.{i + 1}", 0, out_pkts=2) for i in range(3)]
    for p in parts:
        stack.observe("host", p)  # handed out: shared
    ref = weakref.ref(join_batches(parts))  # what the detectors of the tick join too
    stack.advance(int(parts[0]["ts_end_ns"][0]) + 5 * 10**9)
    gc.collect()
    assert ref() is None  # neither the sharing nor a detector keeps it after the tick
