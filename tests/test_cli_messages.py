"""The command line's own messages (issue 24): each error names the subcommand once and prints that
subcommand's usage, contradictory options are refused, ``graceful signals`` fits the terminal,
and ``graceful run`` says why a shell's children outlived the stop signal; and graceful.testing's
refusal of several signals says what was wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from cli_support import GRACEFUL, supervisor_child
from graceful._cli import signals_table
from helpers import TIMEOUT


def cli(*args: str, columns: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [*GRACEFUL, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env
    )


@pytest.mark.parametrize(
    ("args", "name", "unknown"),
    [
        (["signals", "TERM"], "signals", "TERM"),
        (["doctor", "1"], "doctor", "1"),
        (["run", "--bogus", "--", "true"], "run", "--bogus"),
        (["demo", "now"], "demo", "now"),
        (["docs", "cli", "fork"], "docs", "fork"),
    ],
)
def test_an_unknown_argument_gets_the_subcommands_usage(
    args: list[str], name: str, unknown: str
) -> None:
    out = cli(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(f"usage: graceful {name} "), out.stderr
    assert out.stderr.endswith(f"graceful {name}: error: unrecognized arguments: {unknown}\n")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["run"], "graceful run: error: no command given: write it after --"),
        (["run", "--"], "graceful run: error: no command given: write it after --"),
        (["demo", "--signal", "NOPE"], "graceful demo: error: argument --signal: unknown signal"),
        (["demo", "--signal", "KILL"], "graceful demo: error: argument --signal: SIGKILL cannot"),
    ],
)
def test_an_error_names_its_subcommand_once(args: list[str], error: str) -> None:
    out = cli(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(f"usage: graceful {args[0]} "), out.stderr
    message = out.stderr.splitlines()[-1]
    assert message.startswith(error), message
    assert message.count("graceful") == 1 + message.count("`graceful"), message


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["run", "-q", "-v", "--", "true"], "argument -v/--verbose: not allowed with argument -q"),
        (["run", "--verbose", "--quiet", "--", "true"], "argument -q/--quiet: not allowed with"),
        (
            ["run", "--map", "TERM:QUIT", "--map", "TERM:INT", "--", "true"],
            "--map TERM:QUIT and --map TERM:INT map the same signal twice: keep one",
        ),
        (
            ["run", "--signals", "HUP", "--stop-signals", "TERM", "--", "true"],
            "--stop-signals: TERM would start the countdown, but the supervisor drops it",
        ),
        (["demo", "--kill", "--signal", "INT"], "argument --signal: not allowed with argument"),
    ],
)
def test_contradictory_options_are_refused(args: list[str], error: str) -> None:
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert f"graceful {args[0]}: error: {error}" in out.stderr


def test_options_that_agree_are_accepted() -> None:
    """The refusals above are about contradictions only: the same map twice, a stop signal that
    is forwarded because it is mapped, -v twice."""
    args = ["--map", "TERM:QUIT", "--map", "TERM:QUIT", "-vv", "--signals", "HUP"]
    out = cli("run", *args, "--stop-signals", "TERM", "--", sys.executable, "-c", "pass")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("columns", "width"), [(None, 100), ("80", 80), ("132", 132)])
def test_signals_fits_the_terminal_or_100_columns(columns: str | None, width: int) -> None:
    out = cli("signals", columns=columns)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0].split()[:4] == ["#", "signal", "default", "catchable"]
    # Nothing is lost to the wrapping: the same characters as the unwrapped table.
    assert Counter("".join(out.stdout.split())) == Counter("".join(signals_table.render().split()))


def test_signals_is_unwrapped_when_wide_enough() -> None:
    out = cli("signals", columns="400")
    term = next(line for line in out.stdout.splitlines() if " SIGTERM " in line)
    assert term.endswith("handled by every guard (a default signal)")


# The shell waits for its foreground child from before "ready" on: a signal to the shell alone
# (not to its group) leaves its trap pending until that child ends.
SHELL = (
    "import os; os.execvp('sh', ['sh', '-c', "
    '\'trap "echo trapped; exit 0" TERM; sh -c "echo ready; exec sleep 100"\'])'
)


def test_when_the_timeout_fires_on_a_shell_it_says_that_group_reaches_its_children() -> None:
    with supervisor_child(["--timeout", "0.5"], SHELL) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGKILL
    assert "trapped" not in child.lines  # sh waits for sleep: its trap never ran
    assert "SIGTERM went to the command (PID " in child.stderr
    assert "--group sends it to the command's whole process group" in child.stderr


def test_with_group_the_shells_trap_runs_and_nothing_is_said() -> None:
    with supervisor_child(["--timeout", "5", "--group"], SHELL) as child:
        child.wait_for("ready")
        child.send(signal.SIGTERM)
        assert child.finish() == 0
    assert "trapped" in child.lines
    assert "--group" not in child.stderr


# --- graceful.testing's refusal of two signals without a spacing -------------------------------


@pytest.mark.parametrize(
    ("spacing", "says"),
    [({}, "neither was given"), ({"interval": 0.1, "after": "x"}, "pass one of them, not both")],
)
def test_two_signals_need_interval_or_after_and_the_refusal_says_which_was_wrong(
    spacing: dict[str, object], says: str
) -> None:
    from graceful.testing import start

    with start(
        code="print('ready', flush=True); import time; time.sleep(60)", ready="ready"
    ) as app:
        with pytest.raises(ValueError, match="2 signals need interval=") as refused:
            app.stop("TERM", "TERM", **spacing)  # type: ignore[arg-type]
        assert says in str(refused.value)
        assert ("not both" in str(refused.value)) == ("after" in spacing)


@pytest.mark.parametrize("words", [["docs", "readme"], ["signals"]])
def test_a_reader_that_went_away_ends_the_command_by_sigpipe(words: list[str]) -> None:
    """``graceful docs | head``: the pipe's reader is gone before the command writes; it ends
    as a Unix filter does, by SIGPIPE, with no traceback."""
    read, write = os.pipe()
    os.close(read)  # gone before the first write: EPIPE at once, whatever the machine's speed
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "graceful", *words],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert proc.returncode == -signal.SIGPIPE, proc.stderr
    assert proc.stderr == ""
