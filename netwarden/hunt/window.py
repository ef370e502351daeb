"""The time window a hunt looks at, and how it becomes SQL.

Ages (``--since 2h``, "in the last hour", "today") count back from the hunt's "now": the
newest connection activity in the archive, so a state dir filled by replaying an old
capture is hunted as if it were live (``HuntDB.newest``). With no archive, now is the
wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Window:
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    now: float | None = None  # the hunt's now (newest archived activity)

    def sql(self, col: str = "ts") -> tuple[str, list[Any]]:
        """A condition on timestamp column ``col`` and its parameters ("TRUE" if open)."""
        conds, params = [], []
        if self.since is not None:
            conds.append(f"{col} >= make_timestamp(?::BIGINT)")
            params.append(int(self.since * 1_000_000))
        if self.until is not None:
            conds.append(f"{col} < make_timestamp(?::BIGINT)")
            params.append(int(self.until * 1_000_000))
        return (" AND ".join(conds) or "TRUE"), params

    def bounds(self, first: float, last: float) -> tuple[float, float]:
        """(start, end) of the window, the data's own span filling what is open."""
        return (first if self.since is None else self.since,
                last if self.until is None else min(self.until, max(last, first)))  # fmt: skip

    def describe(self) -> str:
        def t(x: float) -> str:
            return datetime.fromtimestamp(x, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

        if self.since is None and self.until is None:
            return "all archived traffic"
        if self.until is None:
            return f"since {t(self.since or 0)}"
        if self.since is None:
            return f"before {t(self.until)}"
        return f"{t(self.since)} to {t(self.until)}"
