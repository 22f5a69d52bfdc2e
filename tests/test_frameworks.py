"""Issue 11, item 7: frameworks that own the signals run graceful's shutdown from their own hook.

Real servers (test dependencies only): uvicorn with a FastAPI app, gunicorn with sync workers and
a PostgreSQL connection per worker. Real signals: SIGTERM, SIGINT, and SIGHUP reloads.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import pgserver
from helpers import LOG_FUNCTION, TIMEOUT, end_script

APP = """
import asyncio, contextlib, os, graceful
from fastapi import FastAPI

def say(text):  # one write per line
    os.write(1, (text + "\\n").encode())

@contextlib.asynccontextmanager
async def lifespan(app):
    async def close_pool():
        await asyncio.sleep(0.01)
        say("async cleanup: pool closed")
    graceful.register(say, "cleanup: cache flushed")
    graceful.register(close_pool)
    say("startup")
    yield
    say("lifespan shutdown")
    await graceful.ashutdown()  # the recipe: graceful's shutdown in the framework's own hook

app = FastAPI(lifespan=lifespan)

@app.get("/slow")
async def slow():
    say("request started")
    await asyncio.sleep(0.5)
    return {"ok": True}
"""

MAIN_AROUND_SERVER = """
import asyncio, os, graceful, uvicorn
from fastapi import FastAPI

def say(text):
    os.write(1, (text + "\\n").encode())

app = FastAPI()

@app.get("/slow")
async def slow():
    say("request started")
    await asyncio.sleep(0.5)
    return {"ok": True}

@graceful.main
def main():
    graceful.register(say, "cleanup: database closed")
    uvicorn.Server(uvicorn.Config(app, port=0, log_level="info", access_log=False)).run()
    return 0

main()
"""


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def port_from_log(proc: subprocess.Popen[str], seen: list[str]) -> int:
    """uvicorn says where it listens on stderr ("Uvicorn running on http://127.0.0.1:PORT")."""
    assert proc.stderr is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"uvicorn did not start: {''.join(seen)}")


def slow_request(port: int, results: list[Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/slow")
        results.append(conn.getresponse().status)
    except OSError as exc:
        results.append(exc)
    finally:
        conn.close()


def signal_during_a_request(proc: subprocess.Popen[str], port: int, sig: int) -> list[Any]:
    """Start a slow request, send ``sig`` once the app has it, return the request's outcome."""
    assert proc.stdout is not None
    results: list[Any] = []
    client = threading.Thread(target=slow_request, args=(port, results))
    client.start()
    line = proc.stdout.readline()
    assert line == "request started\n", line
    os.kill(proc.pid, sig)
    client.join(TIMEOUT)
    return results


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_uvicorn_lifespan_runs_gracefuls_shutdown(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "app.py").write_text(APP)
    proc = start(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", "0", "--no-access-log"], tmp_path
    )
    try:
        seen: list[str] = []
        port = port_from_log(proc, seen)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "startup\n"
        assert signal_during_a_request(proc, port, sig) == [200]  # in flight: still served
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end_script(proc)
    # uvicorn decides how its command ends (it re-raises SIGTERM; after SIGINT its command
    # exits 0): graceful only ran its shutdown in the hook.
    assert proc.returncode in (-sig, 0), "".join(seen) + err
    assert out.splitlines() == [
        "lifespan shutdown",
        "async cleanup: pool closed",
        "cleanup: cache flushed",
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_main_around_uvicorns_server_lets_it_finish_then_runs_the_cleanups(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # uvicorn installs its own handlers: they are its own (graceful does not act on them), it
    # finishes the request in flight, returns, and re-raises the signal into graceful's guard.
    (tmp_path / "server.py").write_text(MAIN_AROUND_SERVER)
    proc = start([sys.executable, "server.py"], tmp_path)
    try:
        seen: list[str] = []
        port = port_from_log(proc, seen)
        assert signal_during_a_request(proc, port, sig) == [200]
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end_script(proc)
    assert proc.returncode == -sig, "".join(seen) + err
    # uvicorn re-raises the signal it captured as it returns: graceful's guard ends the block
    # there, runs the cleanups, and the process dies by that signal.
    assert out.splitlines() == ["cleanup: database closed"]


# --- gunicorn, sync workers, one PostgreSQL connection per worker -------------------------------

WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

CONFIG = (
    """
import os, graceful

DSN = os.environ["APP_DSN"]
LOG = os.environ["APP_LOG"]
workers = 2
bind = "127.0.0.1:0"
graceful_timeout = 5
"""
    + LOG_FUNCTION
    + """
import graceful.integrations.gunicorn

hooks = graceful.integrations.gunicorn.hooks()  # the recipe (docs/servers.md)
globals().update(hooks)

def post_fork(server, worker):  # each worker: its own connection, its own cleanup
    hooks["post_fork"](server, worker)
    import psycopg
    conn = psycopg.connect(DSN)
    graceful.register(conn.close)
    graceful.register(log, "worker-cleanup")  # newest first: logged, then the close
    log("worker-ready")

def on_exit(server):
    hooks["on_exit"](server)
    log("master-exit")
"""
)


def sessions(postgres_server: pgserver.PostgresServer, app: str) -> int:
    import psycopg

    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_until(what: str, check: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling the server's own view (pg_stat_activity) or a log file


def log_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_gunicorn_workers_close_their_connections_on_term_and_on_hup_reloads(
    postgres_server: pgserver.PostgresServer, tmp_path: Path
) -> None:
    pgserver.import_driver("psycopg")
    (tmp_path / "wsgi.py").write_text(WSGI)
    (tmp_path / "gunicorn.conf.py").write_text(CONFIG)
    app = f"gunicorn-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "log"
    env = dict(
        os.environ,
        APP_DSN=postgres_server.conninfo(application_name=app),
        APP_LOG=str(log),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready = lambda n: sum(w[0] == "worker-ready" for w in log_lines(log)) >= n  # noqa: E731
        wait_until("two workers", lambda: ready(2) and sessions(postgres_server, app) == 2)
        # SIGHUP: gunicorn starts new workers and stops the old ones gracefully.
        os.kill(proc.pid, signal.SIGHUP)
        wait_until("two new workers", lambda: ready(4))
        cleanups = lambda: [w for w in log_lines(log) if w[0] == "worker-cleanup"]  # noqa: E731
        wait_until("the old workers' cleanups", lambda: len(cleanups()) == 2)
        wait_until("no leaked session", lambda: sessions(postgres_server, app) == 2)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end_script(proc)
    assert proc.returncode == 0, err[-3000:]
    entries = log_lines(log)
    workers = {w[-1] for w in entries if w[0] == "worker-ready"}
    assert len(workers) == 4
    # Every worker ran its own cleanup once, in itself; the master ran its hook.
    assert sorted(w[-1] for w in entries if w[0] == "worker-cleanup") == sorted(workers)
    assert [w[0] for w in entries][-1] == "master-exit"
    assert sessions(postgres_server, app) == 0
