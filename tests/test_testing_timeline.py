"""Issue 14: the shutdown timeline (carried over the file $GRACEFUL_TIMELINE names), cleanups_ran.

tests/testing_programs/fake_timeline.py writes the records in the documented format itself, so the
reader and the assertions are tested independently of graceful's writer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graceful.testing import ShutdownResult
from graceful.testing._program import Shutdown
from graceful.testing._timeline import format_record, name_matches, parse

FAKE = Path(__file__).parent / "testing_programs" / "fake_timeline.py"


def fake(shutdown: Shutdown, *args: str) -> ShutdownResult:
    return shutdown.run(script=FAKE, args=args, ready="ready")


def failure(check: object) -> str:
    with pytest.raises(AssertionError) as info:
        check()  # type: ignore[operator]
    return str(info.value)


def test_records_arrive_with_their_fields(shutdown: Shutdown) -> None:
    result = fake(shutdown, "app.close_db", "Worker.stop")
    result.died_by("TERM")
    assert [r["event"] for r in result.timeline] == ["signal", "cleanup", "cleanup", "end"]
    signal_record, *_, end = result.timeline
    assert signal_record["signal"] == "SIGTERM"
    assert signal_record["signum"] == 15
    assert {r["pid"] for r in result.timeline} == {result.pid}
    assert end["how"] == "reraise"
    assert end["total"] >= 0
    assert [r["name"] for r in result.cleanups] == ["Worker.stop", "app.close_db"]
    assert result.events("end") == [end]
    assert result.timeline_problems == ()


def test_cleanups_ran_in_order_by_suffix(shutdown: Shutdown) -> None:
    result = fake(shutdown, "app.close_db", "main.<locals>.flush", "Worker.stop")
    result.cleanups_ran(["Worker.stop", "flush", "close_db"])
    result.cleanups_ran(["stop", "app.close_db"])  # others may run in between
    result.cleanups_ran(["stop", "flush", "close_db"], only=True)
    result.cleanups_ran([])

    message = failure(lambda: result.cleanups_ran(["close_db", "flush"]))
    assert message.startswith(
        "expected cleanups ['close_db', 'flush'] in this order, but 'flush' ran before "
        "'close_db'; ran: ['Worker.stop', 'main.<locals>.flush', 'app.close_db']"
    )
    message = failure(lambda: result.cleanups_ran(["db"]))  # a suffix on a dot only
    assert message.startswith("expected cleanups ['db'], but 'db' did not run; ran: [")
    message = failure(lambda: result.cleanups_ran(["stop", "close_db"], only=True))
    assert message.startswith("expected only the cleanups ['stop', 'close_db'], but these ran:")


def test_a_failed_cleanup(shutdown: Shutdown) -> None:
    result = fake(shutdown, "close_db", "stop_worker!")
    message = failure(lambda: result.cleanups_ran(["stop_worker", "close_db"]))
    assert message.startswith(
        "expected cleanup 'stop_worker' to succeed, but stop_worker failed: ValueError: boom"
    )
    assert "cleanup stop_worker: FAILED: ValueError: boom (0.000 s)" in message
    result.cleanups_ran(["stop_worker"], ok=False).cleanups_ran(
        ["stop_worker", "close_db"], ok=None
    )
    assert "to fail, but close_db succeeded" in failure(
        lambda: result.cleanups_ran(["close_db"], ok=False)
    )


def test_the_failure_message_shows_the_timeline(shutdown: Shutdown) -> None:
    result = fake(shutdown, "close_db")
    message = failure(lambda: result.exited_with(0))
    lines = message.splitlines()
    start = lines.index("timeline (3 records, from $GRACEFUL_TIMELINE):")
    assert [line.split("]", 1)[1] for line in lines[start + 1 : start + 4]] == [
        "  signal SIGTERM",
        "  cleanup close_db: ok (0.000 s)",
        "  end: reraise SIGTERM, total 0.000 s",
    ]
    assert lines[start + 1].lstrip().startswith("+0.000 s  [")


def test_records_from_several_processes_and_bad_lines(shutdown: Shutdown) -> None:
    result = fake(shutdown, "--fork", "--garbage", "close_db")
    assert len({r["pid"] for r in result.timeline}) == 2
    result.cleanups_ran(["child.close", "close_db"])
    assert result.timeline_problems[0].startswith("line 5 is not JSON")
    assert "  timeline problem: line 5 is not JSON" in result.report()


def test_no_timeline_says_why(shutdown: Shutdown) -> None:
    result = shutdown.run(code="pass", signal=None)
    assert result.timeline == ()
    message = failure(lambda: result.cleanups_ran(["close_db"]))
    assert (
        "'close_db' did not run; ran: [] (the timeline is empty: the program must run graceful"
        in (message)
    )
    assert "timeline: no records ($GRACEFUL_TIMELINE was set;" in message


def test_parse_and_format_never_raise() -> None:
    records, problems = parse('{"event": "x", "t": 0, "pid": 1, "k": 2}\n[1]\n{"t": 1}\n\n')
    assert [format_record(r) for r in records] == ['  +0.000 s  [1]  x {"k": 2}']
    assert problems == [
        "line 2 lacks event, t or pid: '[1]'",
        "line 3 lacks event, t or pid: '{\"t\": 1}'",
    ]
    for record in (
        {"event": "cleanup"},
        {"event": "backend", "t": "?", "backend_pid": 7, "how": "exited 0", "duration": 0.5},
        {"event": "end", "how": "exit", "signal": None, "exit_code": 143, "total": 1},
        {"event": "second_signal", "signal": "SIGINT", "action": "forced"},
        {"event": "drain_start"},
        {"event": "breaks_done"},
    ):
        assert format_record(record)
    assert format_record({"event": "end", "how": "exit", "exit_code": 143, "total": 1}).endswith(
        "end: exit status 143, total 1.000 s"
    )
    assert name_matches("app.close_db", "close_db")
    assert not name_matches("app.reclose_db", "close_db")
    assert not name_matches(None, "x")
