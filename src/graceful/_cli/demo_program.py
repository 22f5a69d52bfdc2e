"""The worker that ``graceful demo`` runs and signals: graceful's public API on real parts.

It writes rows to a SQLite database file, five per transaction, and sends each row to a backend
process over a pipe. In transaction 3 it runs a slow query, and says so: that is where the demo
signals it. Every step of the ending is printed, numbered in the order it must happen:

1-3. in graceful's helper thread, at once (``register_break``, newest first): the signal is
     heard, the backend is signalled (by ``spawn``'s own break callback), the query is interrupted;
4-7. the cleanups, once the main thread has unwound (``register``, newest first): the open
     transaction is rolled back, the database is closed, the backend is stopped by ``spawn``'s
     cleanup (its pipe closed, waited for, reaped), and the end is announced; then graceful
     re-raises the signal and the worker dies by it.

Run as ``python demo_program.py DATABASE SIGNAL``. Only graceful's public API is used here: this
file is what a user would write.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from typing import Any

import graceful

ROWS = 5  #: rows per transaction
SLOW = 3  #: the transaction that runs a slow query: where the demo signals the worker
BACKEND = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_backend.py")
#: Counts forever; only sqlite3's interrupt() (or the process dying) stops it.
SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
)


def say(text: str) -> None:
    """One line in one write(), so lines of threads and processes sharing stdout never mix."""
    os.write(1, f"  [worker] {text}\n".encode())


def heard() -> None:
    state = "set" if graceful.shutdown_event.is_set() else "NOT set"
    say(f"1. signal received: graceful.shutdown_event is {state}")


def interrupt(db: sqlite3.Connection) -> None:
    say("3. break: the slow query is interrupted (sqlite3's Connection.interrupt)")
    db.interrupt()


def rollback(db: sqlite3.Connection, current: list[int]) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")
        say(f"4. cleanup: transaction {current[0]} rolled back: none of its rows were committed")


def close(db: sqlite3.Connection) -> None:
    db.close()
    say("5. cleanup: database closed")


def reaped(backends: list[subprocess.Popen[Any]]) -> None:
    for backend in backends:
        say(
            f"6. cleanup: backend PID {backend.pid} reaped (returncode {backend.returncode}): "
            "graceful signalled it, closed its pipe, waited for it"
        )


def transaction(db: sqlite3.Connection, feed: Any, number: int) -> None:
    """Insert ROWS rows in one transaction and send each to the backend.

    No ``except`` here: whatever ends the transaction early (the interrupted query, Signalled),
    the ``rollback`` cleanup undoes it, in graceful's exit path, where no signal cuts it short.
    """
    db.execute("BEGIN")
    for i in range(ROWS):
        db.execute("INSERT INTO rows (txn, i) VALUES (?, ?)", (number, i))
        feed.write(f"{number} {i}\n")
    feed.flush()
    if number == SLOW:
        say(f"transaction {number}: {ROWS} rows written, not committed; now in a slow query")
        db.execute(SLOW_QUERY).fetchone()
    db.execute("COMMIT")
    say(f"transaction {number} committed: {ROWS} rows, {ROWS} lines sent to the backend")


def work(path: str) -> int:
    # Cleanups run newest first, so the first registered runs last.
    graceful.register(say, "7. cleanups done: graceful now re-raises the signal")
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("CREATE TABLE IF NOT EXISTS rows (txn INTEGER, i INTEGER, PRIMARY KEY (txn, i))")
    # Break callbacks run newest first too: the query is interrupted last, after the messages.
    graceful.register_break(interrupt, db)
    graceful.register_break(say, "2. break: the backend has been sent SIGTERM (by spawn)")
    started: list[subprocess.Popen[Any]] = []
    graceful.register(reaped, started)  # before spawn: runs after spawn's cleanup stopped it
    backend = graceful.spawn([sys.executable, "-u", BACKEND], stdin=subprocess.PIPE, text=True)
    started.append(backend)
    graceful.register(close, db)  # after spawn: runs before spawn's cleanup
    current = [0]
    graceful.register(rollback, db, current)  # runs first: before the database is closed
    graceful.register_break(heard)
    say(f"PID {os.getpid()}; backend PID {backend.pid} started with graceful.spawn, fed by a pipe")
    for number in itertools.count(1):
        current[0] = number
        transaction(db, backend.stdin, number)
    return 0  # pragma: no cover - the loop ends by a signal


def main(argv: list[str]) -> None:
    path, signame = argv[1], argv[2]
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGQUIT: no core file from the demo

    @graceful.main(signals=("HUP", "INT", "QUIT", "TERM", signame), timeout=5)
    def run() -> int:
        return work(path)

    run()


if __name__ == "__main__":
    main(sys.argv)
