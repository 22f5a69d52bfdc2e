"""The documentation's examples run as printed (issue 24).

A Python block of README.md or docs/*.md marked runnable, with the line ``<!-- runnable: NAME -->``
right before its fence (an HTML comment: invisible once rendered), is extracted and run in a real
subprocess, as the text around it says it behaves: signalled for real where it promises what a
signal does. A block whose first line is ``# FILE.py`` is written to that file, next to the others
of its document; a ``test_*.py`` file is run by pytest. A marked block this file does not know
only has to run and exit 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from backends_support import session_members, wait_dead
from cli_support import kill_session
from helpers import TIMEOUT, Child

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"^<!-- runnable: ([\w-]+) -->\n```python\n(.*?)^```$", re.M | re.S)


class Example(NamedTuple):
    name: str
    document: Path
    code: str

    @property
    def file(self) -> str:
        """The file the block names on its first line (``# service.py``), or ``NAME.py``."""
        first = self.code.splitlines()[0]
        named = re.fullmatch(r"# ([\w.-]+\.py)", first)
        return named.group(1) if named else f"{self.name}.py"


def examples() -> dict[str, Example]:
    found: dict[str, Example] = {}
    for document in DOCUMENTS:
        text = document.read_text()
        for match in MARK.finditer(text):
            name = match.group(1)
            assert name not in found, f"two examples named {name!r}"
            found[name] = Example(name, document, match.group(2))
        marks = text.count("<!-- runnable")
        found_here = sum(1 for e in found.values() if e.document == document)
        assert marks == found_here, f"{document.name}: a runnable mark not right before ```python"
    return found


EXAMPLES = examples()


def write_all(tmp_path: Path, document: Path) -> None:
    """Every runnable block of ``document`` as its file in ``tmp_path`` (they import each other)."""
    for example in EXAMPLES.values():
        if example.document == document:
            (tmp_path / example.file).write_text(example.code)


@contextlib.contextmanager
def run_file(tmp_path: Path, name: str) -> Iterator[Child]:
    """``python -u FILE`` of the example, in ``tmp_path``, in its own session. On the way out,
    whatever the test did, the session is killed first, so no survivor holds the pipes open."""
    example = EXAMPLES[name]
    write_all(tmp_path, example.document)
    path = tmp_path / example.file
    code = f"import os, sys; os.chdir({str(tmp_path)!r})\n"  # then `python -u FILE`, this PID
    code += f"os.execv(sys.executable, [sys.executable, '-u', {str(path)!r}])"
    child = Child(code, start_new_session=True)
    try:
        yield child
    finally:
        kill_session(child.pid)
        child.__exit__(None, None, None)


# --- what each example promises ----------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_until_running(pid: int, cpu: float = 0.05) -> None:
    """The example's endless query is running: its process has used ``cpu`` seconds of CPU since
    it printed the line before the query (printing and starting the query take microseconds; the
    query uses a whole core). A signal that lands between the line and the query's first step
    finds nothing for ``conn.interrupt()`` to stop: the deadline would end the program instead."""
    start = _cpu_seconds(pid)
    end = time.monotonic() + TIMEOUT
    while _cpu_seconds(pid) - start < cpu:
        assert time.monotonic() < end, f"the query did not run within {TIMEOUT} s"
        time.sleep(0.01)  # a bounded poll of the CPU clock, not a stand-in for readiness


def readme_main(tmp_path: Path) -> None:
    """SIGTERM in a query that never ends: the break callback interrupts it at once, the cleanup
    closes the connection, and the program dies by SIGTERM, without a traceback."""
    with run_file(tmp_path, "readme-main") as child:
        child.wait_for("querying")
        wait_until_running(child.proc.pid)  # sqlite3's interrupt() stops a running query only
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.stderr == ""


def readme_asyncio(tmp_path: Path) -> None:
    """It serves; SIGTERM cancels the main task, the async cleanup is awaited, and the program
    dies by SIGTERM."""
    with run_file(tmp_path, "readme-asyncio") as child:
        port = int(child.wait_for_prefix("serving on port ").split()[-1])
        address = ("127.0.0.1", port)
        with socket.create_connection(address, TIMEOUT) as client, client.makefile("rb") as reply:
            assert reply.readline() == b"hello\n"
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines[-1] == "pool closed"
    assert child.stderr == ""


def readme_guard(tmp_path: Path) -> None:
    """A signal inside the block: the cleanup runs, the process dies by the signal, and the line
    after the block is not reached."""
    with run_file(tmp_path, "readme-guard") as child:
        line = child.wait_for_prefix("working in ")
        tmp = Path(line.removeprefix("working in "))
        assert tmp.is_dir()
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert not tmp.exists()  # g.register(shutil.rmtree, tmp) ran
    assert child.lines == [line]  # print(g.signal) was not reached
    assert child.stderr == ""


def readme_register(tmp_path: Path) -> None:
    """Runs as printed; the unregistered cleanup does not run; the connection is closed."""
    with run_file(tmp_path, "readme-register") as child:
        assert child.finish() == 0, child.stderr
    assert child.lines == []
    assert (tmp_path / "app.db").exists()


def readme_register_without_a_guard(tmp_path: Path) -> None:
    """What the text says of the same code under a signal: SIGTERM, no cleanup; SIGINT, cleanups."""
    code = EXAMPLES["readme-register"].code.replace('"metrics flushed"', '"flushed", flush=True')
    code = code.replace("graceful.unregister(flush_metrics)", "")
    for sig, rc, lines in [
        (signal.SIGTERM, -signal.SIGTERM, ["ready"]),
        (signal.SIGINT, -signal.SIGINT, ["ready", "flushed"]),  # KeyboardInterrupt, then exit
    ]:
        program = f"import os\nos.chdir({str(tmp_path)!r})\n{code}\nprint('ready', flush=True)\n"
        program += "import time; time.sleep(60)\n"
        with Child(program, start_new_session=True) as child:
            child.wait_for("ready")
            child.send(sig)
            assert child.finish() == rc, child.stderr
        assert child.lines == lines


def readme_backends(tmp_path: Path) -> None:
    """SIGTERM: the spawned backend, the tracked worker and the worker's children are stopped,
    then the program dies by SIGTERM."""
    with run_file(tmp_path, "readme-backends") as child:
        line = child.wait_for_prefix("started ")
        db, worker = (int(word) for word in line.split()[1:])
        grandchildren = session_pids(worker, 3)  # sh and its two sleeps
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    wait_dead([db, *grandchildren], TIMEOUT)


def session_pids(sid: int, count: int) -> list[int]:
    """The processes of session ``sid``, once there are ``count`` of them (bounded wait)."""
    deadline = time.monotonic() + TIMEOUT
    while len(found := session_members(sid)) < count:
        assert time.monotonic() < deadline, f"session {sid}: {found}, not {count} processes"
        time.sleep(0.01)
    return found


def readme_test_service(tmp_path: Path) -> None:
    """The testing example: test_service.py, run by pytest against service.py, passes."""
    write_all(tmp_path, EXAMPLES["readme-test-service"].document)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_service.py"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def readme_service(tmp_path: Path) -> None:
    """service.py on its own: it serves, and SIGTERM ends it by SIGTERM after its cleanups."""
    with run_file(tmp_path, "readme-service") as child:
        child.wait_for_prefix("listening on port ")
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines[-1] == "stats flushed"


def pool(name: str) -> Callable[[Path], None]:
    """A tracked pool whose tasks run for a minute: SIGTERM ends the program by SIGTERM at once,
    and no worker is left."""

    def check(tmp_path: Path) -> None:
        with run_file(tmp_path, name) as child:
            child.wait_for("working")
            # The program and its 4 workers: the signal comes once the pool is up, as in
            # test_pools.py. (A SIGTERM while the executor was still forking its workers once left
            # a worker that never got the signal, stuck on a lock inherited through fork.)
            workers = session_pids(child.pid, 5)
            child.send(signal.SIGTERM)
            assert child.finish() == -signal.SIGTERM, child.stderr
        wait_dead(workers, TIMEOUT)
        assert child.lines == ["working"]

    return check


BEHAVIOUR: dict[str, Callable[[Path], None]] = {
    "readme-main": readme_main,
    "readme-asyncio": readme_asyncio,
    "backends-executor": pool("backends-executor"),
    "backends-pool": pool("backends-pool"),
    "readme-guard": readme_guard,
    "readme-register": readme_register,
    "readme-backends": readme_backends,
    "readme-service": readme_service,
    "readme-test-service": readme_test_service,
}
EXTRA = [readme_register_without_a_guard]


def test_every_behaviour_belongs_to_a_marked_example() -> None:
    assert set(BEHAVIOUR) <= set(EXAMPLES), set(BEHAVIOUR) - set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_runs_as_printed(name: str, tmp_path: Path) -> None:
    behaviour = BEHAVIOUR.get(name)
    if behaviour is not None:
        behaviour(tmp_path)
        return
    with run_file(tmp_path, name) as child:
        assert child.finish() == 0, child.stderr


@pytest.mark.parametrize("check", EXTRA, ids=lambda check: check.__name__)
def test_what_the_text_around_an_example_says(
    check: Callable[[Path], None], tmp_path: Path
) -> None:
    check(tmp_path)


# --- the mistake the Backends example used to make ----------------------------------------------


def test_a_refused_track_says_that_the_child_still_runs() -> None:
    """``graceful.track(subprocess.Popen(["worker"]), group=True)``: Popen ran before track()
    could refuse, so the refusal says the child is still running and what to do."""
    import graceful

    proc = subprocess.Popen(["sleep", "60"])  # not a group leader
    try:
        with pytest.raises(ValueError, match="leads its own process group") as refused:
            graceful.track(proc, timeout=10, group=True)
        assert f"PID {proc.pid} was started, is still running and is not tracked" in str(
            refused.value
        )
        assert "proc.kill()" in str(refused.value)
        with pytest.raises(TypeError, match="is still running and is not tracked"):
            graceful.track(proc, signal=1.5)  # type: ignore[arg-type]
        assert proc.poll() is None  # it does still run: the message is true
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(ValueError, match="timeout") as after:
        graceful.track(proc, timeout=-1)
    assert "still running" not in str(after.value)  # and no longer says so once it is gone
