"""`graceful demo`, the README's first command, works, tells the truth, and checks itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import graceful
from helpers import TIMEOUT

PROGRAM = Path(graceful.__file__).parent / "_cli" / "demo_program.py"


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graceful", "demo", *args],
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        check=False,
    )


def steps(stdout: str) -> list[str]:
    """The worker's numbered steps, by number, in the order printed."""
    found = []
    for line in stdout.splitlines():
        words = line.split()
        if line.startswith("  [worker] ") and words[1][:-1].isdigit():
            found.append(words[1][:-1])
    return found


@pytest.mark.parametrize("name", ["TERM", "INT", "QUIT"])
def test_the_worker_ends_well_step_by_step(name: str) -> None:
    out = demo("--signal", name)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert steps(text) == ["1", "2", "3", "4", "5", "6", "7"]
    lines = text.splitlines()
    signalled = lines.index(
        f"graceful demo: sending SIG{name} to the worker (PID "
        f"{lines[1].split()[2].rstrip(';')}) in the middle of transaction 3"
    )
    backend_term = next(i for i, x in enumerate(lines) if x.startswith("  [backend] got SIGTERM"))
    backend_eof = next(i for i, x in enumerate(lines) if "[backend] stdin closed (EOF)" in x)
    reaped = next(i for i, x in enumerate(lines) if "6. cleanup: backend PID" in x)
    assert signalled < backend_term < backend_eof < reaped
    assert "reaped (returncode 0)" in lines[reaped]
    assert "4. cleanup: transaction 3 rolled back" in text
    assert "1. signal received: graceful.shutdown_event is set" in text
    assert f"the worker died by SIG{name} (returncode -" in text
    assert "database intact (integrity_check: ok): transactions 1-2 committed, 5 rows each" in text
    assert "no process of the worker is left" in text
    assert lines[-1] == "graceful demo: OK: everything above is as it must be"


def test_kill_runs_no_cleanup_yet_the_backend_dies_and_the_data_holds() -> None:
    out = demo("--kill")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert steps(text) == []  # SIGKILL: none of the worker's code ran
    assert "sending SIGKILL to the worker" in text
    assert "the worker died by SIGKILL (returncode -9): no cleanup could run" in text
    # Whichever comes first ends it: EOF on its pipe, or the kernel's parent-death SIGTERM.
    assert "[backend] stdin closed (EOF) after 15 rows: exiting" in text
    assert ("[backend] got SIGTERM" in text) == ("the kernel sent it SIGTERM" in text)
    assert "hot journal" in text
    assert "database intact (integrity_check: ok)" in text
    assert "(PR_SET_PDEATHSIG)" in text
    assert "and it ended" in text
    assert text.rstrip().endswith("graceful demo: OK: everything above is as it must be")


@pytest.mark.parametrize(
    ("name", "message"),
    [("KILL", "use --kill"), ("CHLD", "does not end a process"), ("NOPE", "unknown signal")],
)
def test_a_signal_the_worker_cannot_handle_is_refused(name: str, message: str) -> None:
    out = demo("--signal", name)
    assert out.returncode == 2
    assert message in out.stderr


def test_the_demo_program_uses_only_the_public_api() -> None:
    tree = ast.parse(PROGRAM.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("graceful"), ast.dump(node)
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name == "graceful" or not alias.name.startswith("graceful")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "graceful"
        ):
            used.add(node.attr)
    assert used <= set(graceful.__all__)
    assert used >= {"main", "register", "register_break", "spawn", "shutdown_event"}
