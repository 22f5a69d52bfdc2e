"""``graceful signals``: this platform's signals as a table, from ``graceful._core.signals``.

The table in docs/signals.md is this module's markdown output (a test keeps them equal), so the
facts live in one place. Realtime signals share one row: they only differ by number.
"""

from __future__ import annotations

import signal
import textwrap
from typing import NamedTuple, Optional

from .._core import signals as _signals

COLUMNS = ("#", "signal", "default", "catchable", "who typically sends it", "graceful")
_UNCATCHABLE = (signal.SIGKILL, signal.SIGSTOP)
#: A column of the text table is never narrowed below this, nor below its longest word if that is
#: shorter (a longer word is broken).
MIN_COLUMN = 10
_ACTIONS = {
    "terminate": "terminate",
    "core": "core dump",
    "ignore": "ignore",
    "stop": "stop",
    "continue": "continue",
}


class Row(NamedTuple):
    number: str
    name: str
    default: str
    catchable: str
    sender: str
    graceful: str


def rows() -> list[Row]:
    """One row per signal, in number order; the realtime range as a single row."""
    rtmin: int = getattr(signal, "SIGRTMIN", 0)
    rtmax: int = getattr(signal, "SIGRTMAX", -1)
    table = []
    for sig in sorted(int(s) for s in signal.valid_signals()):
        if rtmin <= sig <= rtmax:
            if sig == rtmin:
                table.append(_realtime_row(rtmin, rtmax))
            continue
        table.append(
            Row(
                str(sig),
                _signals.name(sig),
                _ACTIONS[_signals.default_action(sig)],
                "no" if sig in _UNCATCHABLE else "yes",
                _signals.sender(sig),
                _signals.what_graceful_does(sig),
            )
        )
    return table


def _realtime_row(rtmin: int, rtmax: int) -> Row:
    graceful = _signals.what_graceful_does(rtmin).replace("'RTMIN'", "'RTMIN+3'")
    return Row(
        f"{rtmin}-{rtmax}",
        f"SIGRTMIN..SIGRTMAX ({rtmax - rtmin + 1} signals)",
        _ACTIONS[_signals.default_action(rtmin)],
        "yes",
        _signals.sender(rtmin),
        graceful,
    )


def render(fmt: str = "text", width: Optional[int] = None) -> str:
    """The table as aligned text or as a markdown table (``fmt`` is "text" or "markdown").

    ``width``: the text table's widest line, in columns (None: no limit). The widest columns are
    narrowed first and their cells wrapped onto more lines; a word longer than ``MIN_COLUMN``
    may be broken."""
    table = rows()
    if fmt == "markdown":
        head = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        body = ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table]
        return "\n".join(head + body) + "\n"
    if fmt != "text":
        raise ValueError(f"graceful signals: format must be 'text' or 'markdown', got {fmt!r}")
    everything: list[tuple[str, ...]] = [COLUMNS, *table]
    widths = _fit(everything, width)
    lines = []
    for row in everything:
        cells = [textwrap.wrap(cell, w, break_on_hyphens=False) for cell, w in zip(row, widths)]
        for i in range(max(len(cell) for cell in cells)):
            parts = [cell[i] if i < len(cell) else "" for cell in cells]
            line = "  ".join(part.ljust(w) for part, w in zip(parts, widths))
            lines.append(line.rstrip())
    return "".join(line + "\n" for line in lines)


def _fit(table: list[tuple[str, ...]], width: Optional[int]) -> list[int]:
    """Column widths: each column's widest cell, then, while the line is wider than ``width``,
    the widest column one narrower, down to its longest word or ``MIN_COLUMN``."""
    widths = [max(len(cell) for cell in column) for column in zip(*table)]
    if width is None:
        return widths
    floor = [min(_longest_word(column), MIN_COLUMN) for column in zip(*table)]
    room = width - 2 * (len(widths) - 1)
    while sum(widths) > room:
        narrowable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _longest_word(column: tuple[str, ...]) -> int:
    return max(len(word) for cell in column for word in cell.split())


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


#: The lines around the generated table in docs/signals.md.
BEGIN = "<!-- graceful signals: begin -->"
END = "<!-- graceful signals: end -->"


def with_table(document: str) -> str:
    """``document`` with the text between BEGIN and END replaced by this platform's table.

    Regenerate docs/signals.md (on Linux) with::

        python -c "from graceful._cli import signals_table as t; import pathlib; \\
                   p = pathlib.Path('docs/signals.md'); p.write_text(t.with_table(p.read_text()))"
    """
    head, begin, rest = document.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the document has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{render('markdown')}{END}{tail}"
