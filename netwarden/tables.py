"""Tables and text for the terminal, in one convention for every command.

- Width: the terminal's on a TTY, 80 columns otherwise (files, pipes), so a table fits a
  classic terminal and a mail.
- Tables have no side borders (``box.SIMPLE_HEAD``: a rule under the header), which leaves
  the columns the room; address and id columns never wrap or truncate (``WHOLE``), the
  free-text columns fold instead.
- Colours only on a TTY (rich's own detection; ``NO_COLOR`` is honoured).
- Plain text (summaries, explanations) is never wrapped when it goes to a file or a pipe:
  ``say`` prints it soft-wrapped, whole lines, so no phrase is cut in two.
"""

from __future__ import annotations

import sys
from typing import Any

#: Columns printed whole (addresses, ids, times): never folded, never cut.
WHOLE = frozenset(
    {"id", "address", "addr", "host", "source", "attacker", "originator", "responder", "target",
     "network", "decision", "subject", "detected (UTC)", "time (UTC)", "when (UTC)", "sensor",
     "pri", "#", "seq", "approval"}
)  # fmt: skip
#: Width used when the output is not a terminal.
FILE_WIDTH = 80


def console(stream: Any = None) -> Any:
    from rich.console import Console

    out = stream or sys.stdout
    return Console(file=out, width=None if out.isatty() else FILE_WIDTH)


def table(title: str | None, columns: list[str], rows: list[list[str]],
          right: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """A rich table in the convention above; ``right``: columns aligned right (numbers)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              padding=(0, 1), show_edge=False)  # fmt: skip
    for c in columns:
        whole = c in WHOLE
        t.add_column(c, no_wrap=whole, overflow="fold", justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*r)
    return t


def print_table(title: str | None, columns: list[str], rows: list[list[str]],
                right: tuple[str, ...] = (), stream: Any = None) -> None:  # fmt: skip
    console(stream).print(table(title, columns, rows, right))


def say(con: Any, text: str, **kw: Any) -> None:
    """One paragraph of plain text: wrapped by the terminal on a TTY, whole in a file."""
    con.print(text, soft_wrap=not con.is_terminal, **kw)
