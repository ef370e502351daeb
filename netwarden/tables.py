"""Tables and text for the terminal, in one convention for every command.

- Width: the terminal's on a TTY, 80 columns otherwise (files, pipes), so a table fits a
  classic terminal and a mail.
- Tables have no side borders (``box.SIMPLE_HEAD``: a rule under the header), which leaves
  the columns the room; cells wrap only between words, so an address is never cut; a table
  that cannot fit that way is printed as one block of ``column value`` pairs per row.
- Colours only on a TTY (rich's own detection; ``NO_COLOR`` is honoured).
- Plain text (summaries, explanations) is never wrapped when it goes to a file or a pipe:
  ``say`` prints it soft-wrapped, whole lines, so no phrase is cut in two.
"""

from __future__ import annotations

import sys
from typing import Any

#: Columns whose cells never wrap (ids). Every other column wraps only between words, and
#: addresses are single words: nothing is ever cut or folded (``min_widths``).
WHOLE = frozenset({"id", "#", "pri", "seq", "decision", "approval"})
#: Width used when the output is not a terminal.
FILE_WIDTH = 80


def console(stream: Any = None) -> Any:
    from rich.console import Console

    out = stream or sys.stdout
    return Console(file=out, width=None if out.isatty() else FILE_WIDTH)


def min_widths(columns: list[str], rows: list[list[str]]) -> list[int]:
    """Per column, the narrowest width that cuts nothing: the longest cell of a ``WHOLE``
    column, the longest word (header included) of the others."""
    out = []
    for i, c in enumerate(columns):
        cells = [r[i] for r in rows]
        if c in WHOLE:
            out.append(max([len(c), *(len(x) for x in cells)]))
        else:
            out.append(max(len(w) for x in [c, *cells] for w in (x.split() or [""])))
    return out


def fit_widths(columns: list[str], rows: list[list[str]], width: int) -> list[int] | None:
    """Column widths that fit ``width`` (two spaces between columns) cutting nothing: each
    column's natural width, the widest shrunk first towards its ``min_widths``; None when
    even the minimum does not fit."""
    gaps = 2 * (len(columns) - 1)
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    floor = min_widths(columns, rows)
    if sum(floor) + gaps > width:
        return None
    while sum(widths) + gaps > width:
        i = max(range(len(widths)), key=lambda k: (widths[k] - floor[k], widths[k]))
        widths[i] -= 1
    return widths


def table(title: str | None, columns: list[str], rows: list[list[str]],
          right: tuple[str, ...] = (), widths: list[int] | None = None) -> Any:  # fmt: skip
    """A rich table in the convention above; ``right``: columns aligned right (numbers);
    ``widths``: exact column widths (``fit_widths``)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              padding=(0, 1, 0, 0), show_edge=False, collapse_padding=True)  # fmt: skip
    for i, c in enumerate(columns):
        t.add_column(c, no_wrap=c in WHOLE, overflow="fold", width=None if widths is None else widths[i],
                     justify="right" if c in right else "left")  # fmt: skip
    for r in rows:
        t.add_row(*r)
    return t


def print_table(title: str | None, columns: list[str], rows: list[list[str]],
                right: tuple[str, ...] = (), stream: Any = None) -> None:  # fmt: skip
    """A table when its natural width fits the console; otherwise (long IPv6 addresses on a
    narrow screen) one block per row, ``column value`` pairs packed on lines that fit, so no
    value is ever cut or folded."""
    con = console(stream)
    widths = fit_widths(columns, rows, con.width)
    if widths is not None:
        con.print(table(title, columns, rows, right, widths))
        return
    if title:
        say(con, title, markup=False)
    for r in rows:
        for line in records(columns, r, con.width):
            say(con, line, markup=False, highlight=False)


def records(columns: list[str], row: list[str], width: int) -> list[str]:
    """One row as lines of ``column value`` pairs (``; ``-separated) of at most ``width``
    characters where the values allow; the first pair starts the block, the others indent."""
    pairs = [f"{c} {' '.join(v.split())}" if i else " ".join(v.split())
             for i, (c, v) in enumerate(zip(columns, row, strict=True)) if v.strip()]  # fmt: skip
    lines: list[str] = []
    for p in pairs:
        sep = "  " if len(lines) == 1 and lines[0] == pairs[0] else "; "
        if lines and len(lines[-1]) + 2 + len(p) <= width:
            lines[-1] += sep + p
        else:
            lines.append(("  " if lines else "") + p)
    return lines


def say(con: Any, text: str, **kw: Any) -> None:
    """One paragraph of plain text: wrapped by the terminal on a TTY, whole in a file."""
    con.print(text, soft_wrap=not con.is_terminal, **kw)
