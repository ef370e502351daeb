"""Beacon scoring (RITA-style) for one source -> destination pair's connections.

Four sub-scores in [0, 1], averaged:

- timing: regularity of the inter-arrival times (Bowley skew ``1 - |skew|`` and median
  absolute deviation relative to the median interval ``1 - MAD/median``) and how many
  connections there are (``min(1, n / FULL_COUNT)``): a beacon's intervals are symmetric
  and tight, and it checks in often;
- size: the same regularity over the bytes each connection sent, plus smallness
  (``1 - mode/65535``): check-ins are small and alike;
- duration: the share of the hunted window between the pair's first and last connection
  (a beacon runs the whole time; an update check or a user's session does not);
- histogram: the share of the hours in that span with at least one connection, times one
  minus the coefficient of variation of the per-hour counts (steady, not bursty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netwarden.hunt.output import reasons

#: connections at which the count sub-score is full
FULL_COUNT = 24
#: fewest connections a pair needs to be scored
MIN_CONNS = 4


@dataclass
class BeaconScore:
    score: float
    timing: float
    size: float
    duration: float
    histogram: float
    interval_s: float
    interval_mad_s: float
    size_mode: int
    size_mad: float
    hours_active: int
    hours_spanned: int
    per_hour: list[int]  # connections in each hour from the first (the histogram)
    reasons: list[str]


def bowley(x: np.ndarray) -> float:
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return 0.0 if q3 == q1 else float((q3 + q1 - 2 * q2) / (q3 - q1))


def mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x))))


def _regularity(x: np.ndarray) -> tuple[float, float]:
    """(skew score, MAD score) of a sample."""
    med = float(np.median(x))
    skew = 1.0 - min(1.0, abs(bowley(x)))
    madm = 0.0 if med <= 0 else max(0.0, 1.0 - mad(x) / med)
    return skew, madm


def score(ts: np.ndarray, sizes: np.ndarray, window: tuple[float, float]) -> BeaconScore | None:
    """Score connections starting at ``ts`` (epoch s) that sent ``sizes`` bytes each,
    hunted over ``window`` (start, end) epoch seconds; None with too few connections."""
    order = np.argsort(ts, kind="stable")
    ts, sizes = ts[order], sizes[order].astype(np.float64)
    if len(ts) < MIN_CONNS:
        return None
    # connections in the same second (parallel, or a burst) are one check-in
    gaps = np.diff(np.unique(np.floor(ts)))
    if len(gaps) < MIN_CONNS - 1:
        return None
    t_skew, t_mad = _regularity(gaps)
    t_count = min(1.0, len(ts) / FULL_COUNT)
    timing = (t_skew + t_mad + t_count) / 3
    values, counts = np.unique(sizes, return_counts=True)
    mode = float(values[np.argmax(counts)])
    s_skew, s_mad = _regularity(sizes) if np.median(sizes) > 0 else (0.0, 0.0)
    size = (s_skew + s_mad + max(0.0, 1.0 - mode / 65535)) / 3
    span = float(ts[-1] - ts[0])
    wlen = max(window[1] - window[0], span, 1.0)
    duration = min(1.0, span / wlen)
    hours = np.floor((ts - ts[0]) / 3600).astype(np.int64)
    per_hour = np.bincount(hours)
    active = int((per_hour > 0).sum())
    cv = float(per_hour.std() / per_hour.mean()) if per_hour.mean() > 0 else 1.0
    histogram = active / len(per_hour) * max(0.0, 1.0 - cv)
    total = (timing + size + duration + histogram) / 4
    med_gap, gap_mad = float(np.median(gaps)), mad(gaps)
    why = reasons(
        (t_mad >= 0.8 and t_skew >= 0.6,
         f"every {med_gap:.0f} s (MAD {gap_mad:.1f} s) over {len(ts)} connections"),
        (s_mad >= 0.8, f"alike sizes ({mode:.0f} B, MAD {mad(sizes):.0f} B)"),
        (duration >= 0.8, f"spans {duration:.0%} of the window"),
        (histogram >= 0.6, f"steady: active in {active} of {len(per_hour)} hours"),
    )  # fmt: skip
    return BeaconScore(
        round(total, 3), round(timing, 3), round(size, 3), round(duration, 3),
        round(histogram, 3), round(med_gap, 3), round(gap_mad, 3), int(mode),
        round(mad(sizes), 1), active, len(per_hour), per_hour.tolist(), why,
    )  # fmt: skip
