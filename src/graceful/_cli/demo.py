"""``graceful demo``: run the worker (``demo_program.py``), signal it mid-transaction, and check.

The worker's own lines are indented. Afterwards the demo checks what must hold whatever happened:
the worker died by the signal it was sent, the database passes ``PRAGMA integrity_check`` and
holds exactly the committed transactions, and no process of the worker is left. With ``--kill``
the worker gets SIGKILL: none of its code runs, yet its backend dies (PR_SET_PDEATHSIG, armed by
``graceful.spawn``) and SQLite rolls the half-done transaction back from its journal.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import IO, Optional

from .._core import signals as _signals
from . import procfs

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_program.py")
#: The line after which the worker sits in a slow query, inside transaction 3.
MID_TRANSACTION = "now in a slow query"
#: The backend's handler is in place once it says this.
BACKEND_READY = "[backend] ready"
#: The longest the demo waits for any one thing.
TIMEOUT = 20.0
ROWS, SLOW = 5, 3  # as in demo_program.py


def say(text: str) -> None:
    print(f"graceful demo: {text}", flush=True)


class Lines:
    """The worker's stdout, line by line, echoed as it comes, each read bounded by a deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = b""
        self.seen: list[str] = []

    def next(self, timeout: float = TIMEOUT) -> Optional[str]:
        """The next line (echoed), or None at EOF; raise TimeoutError past the deadline."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the worker printed nothing for {timeout:g} s")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(self.fd, 4096)
            if not data:
                if not self.buffer:
                    return None
                self.buffer += b"\n"
            self.buffer += data
        raw, _, self.buffer = self.buffer.partition(b"\n")
        line = raw.decode("utf-8", "replace")
        print(line, flush=True)
        self.seen.append(line)
        return line

    def until(self, *texts: str) -> bool:
        """Read until lines containing each of ``texts`` were seen; False at EOF first."""
        while not all(any(text in line for line in self.seen) for text in texts):
            if self.next() is None:
                return False
        return True


def main(signame: str, *, kill: bool = False) -> int:
    """Run the demo; 0 if every check passed."""
    try:
        sig = signal.SIGKILL if kill else _signals.resolve(signame, "graceful demo --signal")
    except ValueError as exc:
        hint = " (to see SIGKILL, use --kill)" if "KILL" in signame.upper() else ""
        print(f"{exc}{hint}", file=sys.stderr)  # "graceful demo --signal: ..."
        return 2
    name = _signals.name(sig)
    workdir = tempfile.mkdtemp(prefix="graceful-demo-")
    path = os.path.join(workdir, "demo.sqlite3")
    if sys.platform.startswith("linux"):
        from .._core import libc

        libc.set_child_subreaper(True)  # an orphaned backend (--kill) comes to us, to be checked
    say(f"a worker writes to {path} in transactions and feeds a backend over a pipe")
    proc = subprocess.Popen(
        [sys.executable, "-u", PROGRAM, path, name[3:] if not kill else "TERM"],
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own session: every process it starts can be found
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        if not lines.until(BACKEND_READY, MID_TRANSACTION):
            say(f"UNEXPECTED: the worker ended early (status {proc.wait(TIMEOUT)})")
            return 1
        backend = _backend_pid(lines.seen)
        say(f"sending {name} to the worker (PID {proc.pid}) in the middle of transaction {SLOW}")
        proc.send_signal(sig)
        while lines.next() is not None:
            pass
        rc = proc.wait(TIMEOUT)
        ok = _report_death(rc, sig)
        ok = _report_database(path, kill) and ok
        heard = any(line.startswith("  [backend] got SIG") for line in lines.seen)
        ok = _report_processes(proc.pid, backend, kill, heard) and ok
    finally:
        _leave_nothing(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    say("OK: everything above is as it must be" if ok else "UNEXPECTED: see above")
    return 0 if ok else 1


def _backend_pid(seen: list[str]) -> int:
    for line in seen:
        if "backend PID " in line:
            return int(line.split("backend PID ")[1].split()[0])
    return 0


def _report_death(rc: int, sig: int) -> bool:
    name = _signals.name(sig)
    if rc == -sig:
        how = (
            "no cleanup could run: no rollback, no close"
            if sig == signal.SIGKILL
            else "after its cleanups, graceful re-raised the signal"
        )
        say(f"the worker died by {name} (returncode {rc}): {how}")
        return True
    say(f"UNEXPECTED: the worker ended with returncode {rc}, not -{int(sig)} ({name})")
    return False


def _report_database(path: str, kill: bool) -> bool:
    journal = os.path.exists(path + "-journal") and os.path.getsize(path + "-journal") > 0
    db = sqlite3.connect(path)
    try:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        counts = dict(db.execute("SELECT txn, count(*) FROM rows GROUP BY txn").fetchall())
    finally:
        db.close()
    committed = list(range(1, SLOW))
    intact = check == "ok" and counts == {n: ROWS for n in committed}
    if kill and journal:
        say(
            "the worker left a hot journal behind; SQLite rolled it back when the database was "
            "opened again"
        )
    if intact:
        say(
            f"database intact (integrity_check: {check}): transactions 1-{SLOW - 1} committed, "
            f"{ROWS} rows each; transaction {SLOW}, interrupted, left no row"
        )
    else:
        say(f"UNEXPECTED database: integrity_check {check!r}, rows per transaction {counts}")
    return intact


def _report_processes(worker: int, backend: int, kill: bool, heard: bool) -> bool:
    ok = backend > 0 and _wait_gone(backend)
    if backend <= 0:
        say("UNEXPECTED: the worker never said which backend it started")
    elif ok:
        how = "reaped by the worker"
        if kill:
            # The kernel closes a dying process's files before it sends the parent-death
            # signal: the backend may see EOF and be gone before SIGTERM reaches it.
            how = (
                "when the worker died, the kernel sent it SIGTERM (PR_SET_PDEATHSIG) and "
                "closed its pipe, and it ended"
                if heard
                else "when the worker died, the kernel closed its pipe, and it ended before "
                "the parent-death SIGTERM (PR_SET_PDEATHSIG) reached it"
            )
        say(f"backend PID {backend}: gone ({how})")
    else:
        say(f"UNEXPECTED: backend PID {backend} is STILL RUNNING")
    left = _session(worker)
    if left:
        say(f"UNEXPECTED: processes of the worker still running: {left}")
    else:
        say("no process of the worker is left")
    return ok and not left


def _wait_gone(pid: int) -> bool:
    """Wait (bounded) for ``pid`` to be gone; reap it if it was re-parented to us."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our child if orphaned to us (subreaper)
            if done:
                return True
        except ChildProcessError:
            if not _alive(pid):
                return True
        time.sleep(0.01)
    return False


def _alive(pid: int) -> bool:
    if procfs.available():
        entry = procfs.stat(pid)
        return entry is not None and entry.alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _session(sid: int) -> list[int]:
    if not procfs.available():
        return []
    return [p.pid for p in procfs.processes() if p.session == sid and p.alive]


def _leave_nothing(proc: subprocess.Popen[bytes]) -> None:
    """Whatever happened above: kill what is left of the worker's session, reap, close."""
    for pid in _session(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)
    if proc.stdout is not None:
        proc.stdout.close()
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
