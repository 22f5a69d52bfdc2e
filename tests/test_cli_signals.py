"""``graceful signals``: the table, its two formats, and docs/signals.md generated from it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from cli_support import graceful_cli
from graceful._cli import signals_table
from helpers import skip_outside_ci

DOCS = Path(__file__).parent.parent / "docs" / "signals.md"


def test_docs_signals_md_is_the_generated_table() -> None:
    if sys.platform != "linux":
        skip_outside_ci("docs/signals.md holds the Linux table")
    document = DOCS.read_text()
    assert document.count(signals_table.BEGIN) == 1
    assert document.count(signals_table.END) == 1
    assert signals_table.with_table(document) == document, (
        "docs/signals.md disagrees with `graceful signals --format markdown`; regenerate it "
        "with the command in graceful._cli.signals_table.with_table's docstring"
    )


def test_markdown_output_is_what_the_docs_hold() -> None:
    out = graceful_cli("signals", "--format", "markdown")
    assert out.returncode == 0, out.stderr
    assert out.stdout == signals_table.render("markdown")
    if sys.platform == "linux":
        assert out.stdout in DOCS.read_text()


def test_every_signal_of_this_platform_has_a_row() -> None:
    rows = signals_table.rows()
    numbers: set[int] = set()
    for row in rows:
        first, _, last = row.number.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    assert numbers == {int(s) for s in signal.valid_signals()}
    for row in rows:
        assert row.default in ("terminate", "core dump", "ignore", "stop", "continue")
        assert row.catchable in ("yes", "no")
        assert row.sender
        assert "unknown" not in row.sender
        assert row.graceful
        assert not row.name.startswith("signal ")  # every number has its name


def test_the_rows_say_what_graceful_does() -> None:
    by_name = {row.name: row for row in signals_table.rows()}
    assert by_name["SIGTERM"].graceful == "handled by every guard (a default signal)"
    assert by_name["SIGKILL"].catchable == "no"
    assert by_name["SIGKILL"].graceful == "refused: cannot be caught"
    assert by_name["SIGSEGV"].graceful == "refused: a fault in the running code"
    assert by_name["SIGCHLD"].graceful == "refused: does not end a process"
    assert by_name["SIGUSR1"].graceful == "handled when named: guard('USR1')"
    assert by_name["SIGQUIT"].default == "core dump"
    assert by_name["SIGWINCH"].default == "ignore"


def test_text_output_is_an_aligned_table() -> None:
    out = graceful_cli("signals")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["#", "signal", "default", "catchable"]
    term = next(line for line in lines if " SIGTERM " in line)
    assert term.split()[:4] == [str(int(signal.SIGTERM)), "SIGTERM", "terminate", "yes"]
    column = lines[0].index("catchable")
    assert all(line[column - 2 : column] == "  " for line in lines)


def test_an_unknown_format_is_refused() -> None:
    out = graceful_cli("signals", "--format", "html")
    assert out.returncode == 2
    assert "invalid choice: 'html'" in out.stderr
    with pytest.raises(ValueError, match="format must be 'text' or 'markdown'"):
        signals_table.render("html")


def test_errors_that_point_to_the_docs_point_to_the_command_too() -> None:
    import graceful as g

    with pytest.raises(
        ValueError, match=r"see `graceful docs signals` and the table `graceful signals`$"
    ):
        g.guard("KILL")
