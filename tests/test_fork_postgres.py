"""Fork safety proven on a real PostgreSQL (the `postgres_server` fixture, tests/pgserver.py).

The hazard: a parent registers `conn.close` with `atexit`, a forked child exits normally and runs
it, and libpq sends the server a Terminate message on the socket the two processes share, so the
parent's next query fails. Each scenario runs as a script in its own session (so no process can
outlive the test) and reports through stdout and a log file that every process appends to.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import pgserver
from helpers import LOG_FUNCTION, end_script, read_log, run_script, start_script

DRIVERS = ["psycopg2", "psycopg"]
CHILD_ENDS = ["exit", "raise", "sigterm-in-guard"]
#: Children of each end in the survivor test: enough to show the parent's session outlives every
#: one of them, few enough that a busy machine forks them well inside the script's time limit.
PER_END = 10

# Shared by the scripts: connect with one driver or the other, ask the server who we are, and
# append a line to the shared log. One os.write with O_APPEND per line: lines never interleave.
PRELUDE = (
    """
import os, select, signal, socket, sys, time
import graceful

DRIVER, DSN, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
db = __import__(DRIVER)

def connect(dsn=DSN):
    conn = db.connect(dsn)
    conn.autocommit = True
    return conn

def query(conn, sql, *params):
    cur = conn.cursor()
    try:
        cur.execute(sql, params or None)
        return cur.fetchone() if cur.description else None
    finally:
        cur.close()

"""
    + LOG_FUNCTION
)

# A parent with one connection forks children one at a time and checks, after each has ended,
# that its own session is still there (same backend pid). argv: ... cleanup-kind, ends, count.
SURVIVOR = """
import atexit

KIND, ENDS, COUNT = sys.argv[4], sys.argv[5].split(","), int(sys.argv[6])
conn = connect()
backend = query(conn, "select pg_backend_pid()")[0]

def close_parent_connection():
    log("parent-close")
    conn.close()

if KIND == "atexit":
    atexit.register(close_parent_connection)
else:
    graceful.register(close_parent_connection)
print("backend", backend, os.getpid(), flush=True)

for i in range(COUNT):
    end = ENDS[i % len(ENDS)]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        graceful.register(log, "child-cleanup", end, i)  # the child's own cleanup: this runs
        if end == "exit":
            sys.exit(0)
        if end == "raise":
            raise RuntimeError("child fails on purpose")
        with graceful.guard():  # sigterm-in-guard: the child's own guard
            os.write(ready_w, b"ready")
            time.sleep(30)  # SIGTERM from the parent ends this
        os._exit(99)  # not reached
    os.close(ready_w)
    if end == "sigterm-in-guard":
        if not select.select([ready_r], [], [], 20)[0] or os.read(ready_r, 5) != b"ready":
            print(f"child {pid} never got ready", flush=True)
            os.kill(pid, signal.SIGKILL)
            os._exit(4)
        os.kill(pid, signal.SIGTERM)
    os.close(ready_r)
    _, status = os.waitpid(pid, 0)
    print("child", end, os.waitstatus_to_exitcode(status), flush=True)
    try:
        now = query(conn, "select pg_backend_pid()")[0]
    except db.OperationalError as exc:
        print(f"broken after child {i} ({end}): {' '.join(str(exc).split())}", flush=True)
        os._exit(3)
    if now != backend:
        print(f"backend changed after child {i}: {backend} -> {now}", flush=True)
        os._exit(3)
print("survived", COUNT, "children on backend", backend, flush=True)
"""

# The seed, fixed: a forking server whose parent opens its connection, accepts work on a Unix
# socket and forks a child per request. `at_fork(before=close_db)` closes the parent's connection
# before every fork; each process reconnects on its own. argv: ... app-name, socket-path, table.
SERVER = """
APP, SOCKET, TABLE = sys.argv[4], sys.argv[5], sys.argv[6]
# application_name tells the parent's sessions from the children's in pg_stat_activity.
PARENT_DSN = f"{DSN} application_name={APP}-parent"
CHILD_DSN = f"{DSN} application_name={APP}-child"
state = {"conn": None, "dsn": PARENT_DSN}
children = set()

def db_conn():
    if state["conn"] is None:
        state["conn"] = connect(state["dsn"])
    return state["conn"]

def close_db():
    conn, state["conn"] = state["conn"], None
    if conn is not None:
        conn.close()

def in_child():
    state["dsn"] = CHILD_DSN
    graceful.register(close_db)  # the child's own cleanup: close the child's own connection

def reap(block):
    for pid in list(children):
        try:
            done = os.waitpid(pid, 0 if block else os.WNOHANG)[0]
        except ChildProcessError:  # reaped just before a signal cut the loop short
            done = True
        if done:
            children.discard(pid)

graceful.register(close_db)
graceful.register(reap, True)  # newest first: wait for the children, then close
graceful.at_fork(before=close_db, after_in_child=in_child)

listener = socket.socket(socket.AF_UNIX)
listener.bind(SOCKET)
listener.listen(128)
with graceful.guard():
    query(db_conn(), f"create table {TABLE} (id serial primary key, value int, "
          "doubled int, parent_backend int, child_backend int)")
    print("ready", flush=True)
    while True:
        client, _ = listener.accept()
        with client.makefile() as request:
            value = int(request.readline())
        # The parent uses its connection between forks: it reconnects after each one.
        job, parent_backend = query(db_conn(), f"insert into {TABLE} (value, parent_backend) "
            "values (%s, pg_backend_pid()) returning id, parent_backend", value)
        pid = os.fork()
        if pid == 0:
            listener.close()
            try:
                doubled, backend = query(db_conn(), f"update {TABLE} set doubled = value * 2, "
                    "child_backend = pg_backend_pid() where id = %s "
                    "returning doubled, child_backend", job)
                reply = f"ok {value} {doubled} {backend} {parent_backend}"
            except Exception as exc:
                reply = "error " + " ".join(str(exc).split())
            client.sendall(reply.encode() + b"\\n")
            client.close()
            sys.exit(0)
        client.close()
        children.add(pid)
        reap(False)
"""


# docs/fork.md: a child that inherited a connection can let go of it without closing it, so the
# server never hears a goodbye. "drop": lose every reference (both drivers skip the goodbye when
# an object from another process is garbage collected). "detach": put /dev/null in place of the
# socket, then close(): libpq frees its state and says goodbye to /dev/null.
# "close" is the control: the hazard. argv: ... pattern.
DROP = """
import gc

PATTERN = sys.argv[4]
conn = connect()
backend = query(conn, "select pg_backend_pid()")[0]
fd = conn.fileno()

def drop_inherited(conn):
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, conn.fileno(), inheritable=False)
    finally:
        os.close(devnull)
    conn.close()

pid = os.fork()
if pid == 0:
    try:
        if PATTERN == "close":
            conn.close()
        elif PATTERN == "drop":
            del conn
            gc.collect()
        else:
            drop_inherited(conn)
            print("child: inherited socket closed", not os.path.exists(f"/proc/self/fd/{fd}"))
        mine = connect()
        print("child: own session", query(mine, "select pg_backend_pid()")[0] != backend)
        mine.close()
    except BaseException as exc:
        print("child failed:", repr(exc))
        os._exit(1)
    sys.exit(0)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
try:
    print("parent: same session", query(conn, "select pg_backend_pid()")[0] == backend, code)
except db.OperationalError as exc:
    print("parent: broken", " ".join(str(exc).split()), code)
"""


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(PRELUDE + body)
    return path


def _sessions(server: pgserver.PostgresServer, psycopg: Any, application_name: str) -> list[int]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where application_name = %s order by pid",
            (application_name,),
        ).fetchall()
    return [pid for (pid,) in rows]


def _wait_sessions_gone(
    server: pgserver.PostgresServer, psycopg: Any, application_name: str, timeout: float = 10
) -> list[int]:
    """Backends exit a moment after their client says goodbye: poll, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = _sessions(server, psycopg, application_name)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


@pytest.mark.parametrize("driver", DRIVERS)
def test_plain_atexit_in_parent_breaks_its_connection_when_a_child_exits(
    postgres_server: pgserver.PostgresServer, tmp_path: Path, driver: str
) -> None:
    """The hazard is real: the child's exit runs the parent's atexit conn.close()."""
    pgserver.import_driver(driver)
    script = _script(tmp_path, "survivor", SURVIVOR)
    log = tmp_path / "log"
    rc, out, err = run_script(
        [str(script), driver, postgres_server.dsn, str(log), "atexit", "exit", "1"]
    )
    assert rc == 3, (out, err)
    parent_pid = int(out.split()[2])
    assert "broken after child 0 (exit): " in out
    assert "server closed the connection unexpectedly" in out
    # The parent's handler ran once, in the child (the parent then left by os._exit).
    closes = [words for words in read_log(log) if words[0] == "parent-close"]
    assert len(closes) == 1
    assert int(closes[0][1]) != parent_pid


@pytest.mark.parametrize("driver", DRIVERS)
def test_graceful_register_keeps_the_parents_connection_through_children_of_each_end(
    postgres_server: pgserver.PostgresServer, tmp_path: Path, driver: str
) -> None:
    psycopg = pgserver.import_driver("psycopg")
    pgserver.import_driver(driver)
    script = _script(tmp_path, "survivor", SURVIVOR)
    log = tmp_path / "log"
    app = f"survivor-{uuid.uuid4().hex[:12]}"
    dsn = postgres_server.conninfo(application_name=app)
    count = PER_END * len(CHILD_ENDS)
    rc, out, err = run_script(
        [str(script), driver, dsn, str(log), "graceful", ",".join(CHILD_ENDS), str(count)],
        timeout=300,  # a bound on a hang; 30 forks take a few seconds, under load a minute
    )
    assert rc == 0, (out, err)
    lines = out.splitlines()
    backend, parent_pid = map(int, lines[0].split()[1:])
    assert lines[-1] == f"survived {count} children on backend {backend}"
    # Each child ended the way it was told to: 0 for sys.exit, 1 for the uncaught exception, and
    # killed by SIGTERM after its own guard ran its cleanups.
    expected = {"exit": 0, "raise": 1, "sigterm-in-guard": -signal.SIGTERM}
    statuses = [line.split() for line in lines if line.startswith("child ")]
    assert len(statuses) == count
    assert all(int(code) == expected[end] for _, end, code in statuses), statuses
    assert err.count("RuntimeError: child fails on purpose") == PER_END
    # Every child ran its own cleanup, once; the parent's cleanup ran once, in the parent, last.
    entries = read_log(log)
    child_cleanups = [words for words in entries if words[0] == "child-cleanup"]
    ran = collections.Counter(words[1] for words in child_cleanups)
    assert len(child_cleanups) == count, (ran, out[-3000:], err[-3000:])
    # One per child, told apart by its index (PIDs may repeat: the machine recycles them).
    assert sorted(int(words[2]) for words in child_cleanups) == list(range(count))
    assert sorted(words[1] for words in child_cleanups) == sorted(
        CHILD_ENDS[i % len(CHILD_ENDS)] for i in range(count)
    )
    assert [words for words in entries if words[0] == "parent-close"] == [entries[-1]]
    assert entries[-1] == ["parent-close", str(parent_pid)]
    # The parent's cleanup closed its session properly: the server lets it go.
    assert _wait_sessions_gone(postgres_server, psycopg, app) == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_forking_server_closes_before_fork_and_each_process_reconnects(
    postgres_server: pgserver.PostgresServer, tmp_path: Path, driver: str
) -> None:
    psycopg = pgserver.import_driver("psycopg")
    pgserver.import_driver(driver)
    script = _script(tmp_path, "server", SERVER)
    log = tmp_path / "log"
    sock_path = str(tmp_path / "server.sock")
    if len(sock_path) > 100:  # AF_UNIX path limit
        sock_path = f"/tmp/graceful-{uuid.uuid4().hex[:12]}.sock"
    tag = uuid.uuid4().hex[:12]
    app, table = f"forkserver-{tag}", f"jobs_{tag}"
    requests = list(range(1, 31))
    proc = start_script([str(script), driver, postgres_server.dsn, str(log), app, sock_path, table])
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # the server creates its table, then says so
        if ready != "ready\n":
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the server did not start: {ready!r}\n{proc.communicate(timeout=10)[1]}")
        # All requests first (the parent forks a child for each as it accepts them), then replies.
        for value in requests:
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(20)
            clients.append(client)
            client.connect(sock_path)
            client.sendall(f"{value}\n".encode())
        replies = []
        for client in clients:
            with client.makefile() as reply:
                replies.append(reply.readline().split())
        for value, reply in zip(requests, replies):
            assert reply[:3] == ["ok", str(value), str(value * 2)], reply
        # Each child used its own session, never the parent's.
        child_backends = {int(reply[3]) for reply in replies}
        parent_backends = {int(reply[4]) for reply in replies}
        assert not child_backends & parent_backends
        # Every child's session has ended (each closed its own connection at exit); the parent
        # holds none of its own, since it closed it before the last fork.
        assert _wait_sessions_gone(postgres_server, psycopg, app + "-child") == []
        assert len(_sessions(postgres_server, psycopg, app + "-parent")) <= 1
        # SIGTERM: the parent's guard waits for its children, closes its connection, and dies
        # by the signal.
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == -signal.SIGTERM, (out, err)
        assert "Traceback" not in err, err
    finally:
        for client in clients:
            client.close()
        end_script(proc)
        if os.path.exists(sock_path):
            os.unlink(sock_path)
    # No leaked sessions once all have ended, and the work is all in the table.
    assert _wait_sessions_gone(postgres_server, psycopg, app + "-parent") == []
    assert _wait_sessions_gone(postgres_server, psycopg, app + "-child") == []
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        rows = conn.execute(f"select value, doubled from {table} order by value").fetchall()
        conn.execute(f"drop table {table}")
    assert rows == [(value, value * 2) for value in requests]


@pytest.mark.parametrize("pattern", ["drop", "detach", "close"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_child_can_let_go_of_an_inherited_connection_without_closing_it(
    postgres_server: pgserver.PostgresServer, tmp_path: Path, driver: str, pattern: str
) -> None:
    pgserver.import_driver(driver)
    script = _script(tmp_path, "drop", DROP)
    rc, out, err = run_script(
        [str(script), driver, postgres_server.dsn, str(tmp_path / "log"), pattern]
    )
    assert rc == 0, (out, err)
    lines = out.splitlines()
    assert "child: own session True" in lines, (out, err)
    if pattern == "detach" and sys.platform == "linux":
        assert "child: inherited socket closed True" in lines
    if pattern == "close":  # the control: closing it in the child ends the parent's session
        assert lines[-1].startswith("parent: broken "), (out, err)
        assert "server closed the connection unexpectedly" in lines[-1]
    else:
        assert lines[-1] == "parent: same session True 0", (out, err)
