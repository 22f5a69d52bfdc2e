"""Issue 13: where programs are stopped for real. Drain (Kubernetes), systemd's notify protocol,
and the shutdown timeline. Real processes, real signals, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import TIMEOUT, Child, run

SERVER = """
import http.server, os, sys, threading, graceful

def say(text):  # one write per line: the request threads and the main thread both print
    os.write(1, (text + "\\n").encode())

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":  # the readiness probe fails as soon as the drain starts
            code = 503 if graceful.draining.is_set() else 200
        else:
            code = 200  # in-flight and late requests are still served during the drain
        if self.path == "/done":  # nothing in flight any more: stop draining
            code = 200 if graceful.end_drain() else 409
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass

@graceful.main(drain=DRAIN, timeout=5)
def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = False  # server_close() waits for the requests in flight
    # Serve in a thread: socketserver is not safe against an exception raised into its loop
    # (it closes a connection it has just accepted), so the main thread only waits.
    threading.Thread(target=server.serve_forever).start()
    graceful.register(say, "cleanup ran")
    graceful.register(server.server_close)
    graceful.register(server.shutdown)  # newest first: stop accepting, then close
    try:
        say(f"port {server.server_address[1]}")  # ready, inside the try: the signal may follow
        threading.Event().wait()
    finally:
        say("server stopped")

main()
"""


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_status(port: int, path: str, status: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while get(port, path) != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.01)  # polling the probe, as a load balancer does; bounded


DRAIN = 4.0  # seconds; an early end must come well before it, even on a loaded machine


@pytest.fixture
def server() -> Iterator[tuple[Child, int]]:
    with Child(SERVER.replace("DRAIN", str(DRAIN))) as child:
        port = int(child.wait_for_prefix("port ").split()[1])
        assert get(port, "/ready") == 200
        yield child, port


def test_during_the_drain_the_probe_fails_and_requests_are_still_served(
    server: tuple[Child, int],
) -> None:
    child, port = server
    start = time.monotonic()
    child.send(signal.SIGTERM)
    wait_status(port, "/ready", 503)
    assert get(port, "/work") == 200  # a late request, after the probe failed
    assert time.monotonic() - start < DRAIN  # still inside the drain
    assert child.finish() == -signal.SIGTERM
    elapsed = time.monotonic() - start
    assert DRAIN <= elapsed < DRAIN + 2.0, elapsed
    assert child.lines[1:] == ["server stopped", "cleanup ran"]


def test_a_second_signal_ends_the_drain_early_and_the_cleanups_still_run(
    server: tuple[Child, int],
) -> None:
    child, port = server
    start = time.monotonic()
    child.send(signal.SIGTERM)
    wait_status(port, "/ready", 503)
    child.send(signal.SIGTERM)
    assert child.finish() == -signal.SIGTERM
    assert time.monotonic() - start < DRAIN - 1.0, child.stderr
    assert child.lines[1:] == ["server stopped", "cleanup ran"], child.stderr


def test_end_drain_from_code_ends_it_early(server: tuple[Child, int]) -> None:
    child, port = server
    start = time.monotonic()
    child.send(signal.SIGTERM)
    wait_status(port, "/ready", 503)
    assert get(port, "/done") == 200, child.stderr
    assert child.finish() == -signal.SIGTERM
    assert time.monotonic() - start < DRAIN - 1.0, child.stderr
    assert child.lines[1:] == ["server stopped", "cleanup ran"], child.stderr


# --- systemd -------------------------------------------------------------------------------------

NOTIFIED = """
import time, graceful
print("notified", graceful.notify_ready("serving"), flush=True)
graceful.register(time.sleep, 0.3)  # a slow shutdown
with graceful.guard(timeout=3, drain=0.5):
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
        env = address
    else:
        name = f"graceful-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        env = "@" + name
    sock.settimeout(TIMEOUT)
    with sock:
        yield sock, env


def test_systemd_hears_ready_then_stopping_with_an_extended_timeout(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    with Child(NOTIFIED, env={"NOTIFY_SOCKET": address}) as child:
        child.wait_for("ready")
        assert child.lines[0] == "notified True"
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=serving"]
        child.send(signal.SIGTERM)
        stopping = sock.recv(4096).decode().split("\n")
        drain_over = sock.recv(4096).decode().split("\n")
        assert child.finish() == -signal.SIGTERM
    # Drain 0.5 s + deadline 3 s + a margin of 1 s; then, when the drain is over, 3 s + 1 s:
    # what is really left when the watcher sends it (a moment later than the signal).
    assert stopping[:2] == ["STOPPING=1", "STATUS=stopping after SIGTERM"]
    assert len(stopping) == 3
    assert stopping[2].startswith("EXTEND_TIMEOUT_USEC=")
    assert 4_300_000 <= int(stopping[2].split("=")[1]) <= 4_500_000
    (extend,) = drain_over
    assert extend.startswith("EXTEND_TIMEOUT_USEC=")
    assert 3_800_000 <= int(extend.split("=")[1]) <= 4_000_000


def test_a_missing_notify_socket_changes_nothing(tmp_path: Path) -> None:
    child = run(NOTIFIED, signal.SIGTERM, env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["notified False", "ready"]
    assert child.stderr == ""


def test_notify_ready_outside_systemd_does_nothing() -> None:
    child = run("import graceful; print(graceful.notify_ready())", env={"NOTIFY_SOCKET": ""})
    assert child.lines == ["False"]


# --- the timeline --------------------------------------------------------------------------------

TIMELINE = """
import json, logging, sys, time, graceful

class JSONHandler(logging.Handler):  # what a JSON log shipper would do with the records
    def emit(self, record):
        facts = getattr(record, "graceful", None)
        if facts is not None:
            sys.stdout.write(json.dumps(facts) + "\\n")
            sys.stdout.flush()

logger = logging.getLogger("graceful")
logger.addHandler(JSONHandler())
logger.setLevel(logging.INFO)

def close_db():
    pass

def flaky():
    raise ValueError("boom")

graceful.register(close_db)
graceful.register(flaky)
graceful.register_break(lambda: None)
with graceful.guard(timeout=5):
    print(json.dumps({"event": "ready"}), flush=True)
    time.sleep(60)
"""


def test_a_json_log_handler_receives_the_timeline_in_order_with_its_fields() -> None:
    child = run(TIMELINE, signal.SIGTERM, ready='{"event": "ready"}')
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    records = [json.loads(line) for line in child.lines[1:]]
    events = [r["event"] for r in records]
    assert events == ["signal", "breaks_done", "cleanup", "cleanup", "end"], records
    signal_, _breaks, flaky, close_db, end = records
    assert signal_["signal"] == "SIGTERM"
    assert signal_["signum"] == signal.SIGTERM
    assert signal_["t"] < 0.01
    assert flaky["name"] == "__main__.flaky"
    assert flaky["ok"] is False
    assert flaky["error"] == "ValueError: boom"
    assert close_db["name"] == "__main__.close_db"
    assert close_db["ok"] is True
    assert close_db["error"] is None
    assert close_db["duration"] >= 0
    assert end["how"] == "reraise"
    assert end["signal"] == "SIGTERM"
    assert end["exit_code"] is None
    times = [r["t"] for r in records]
    assert times == sorted(times)
    assert end["total"] == end["t"]
    assert all(r["pid"] == child.pid for r in records)


def test_each_stopped_backend_has_its_line_on_the_timeline(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline"
    code = """
    import subprocess, time, graceful
    polite = graceful.spawn(["sleep", "60"])
    stubborn = graceful.spawn(
        ["sh", "-c", "trap '' TERM; echo armed; exec sleep 60"],
        timeout=0.3, stdout=subprocess.PIPE,
    )
    assert stubborn.stdout.readline() == b"armed\\n"  # it ignores SIGTERM from now on
    with graceful.guard():
        print("ready", polite.pid, stubborn.pid, flush=True)
        time.sleep(60)
    """
    with Child(code, env={"GRACEFUL_TIMELINE": str(timeline)}) as child:
        polite, stubborn = map(int, child.wait_for_prefix("ready").split()[1:])
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    backends = {r["backend_pid"]: r for r in records(timeline) if r["event"] == "backend"}
    assert backends[polite]["how"] == "killed by SIGTERM"
    assert backends[stubborn]["how"] == "SIGKILLed after 0.3 s"
    assert 0.3 <= backends[stubborn]["duration"] < 2.0


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
