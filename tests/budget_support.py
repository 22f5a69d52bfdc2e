"""Helpers for the stop-budget tests (no tests here): a three-level tree and two orchestrators.

The tree is ``graceful run OPTIONS -- python APP``: the app runs under ``@graceful.main`` and
starts a backend with ``graceful.spawn`` that runs under ``@graceful.main`` too. Each level
writes ``WHAT MONOTONIC`` lines to ``$BUDGET_LOG`` as its cleanup starts and ends; ``APP_SLOW``
and ``BACKEND_SLOW`` are how long each cleanup takes (60: it hangs).
"""

from __future__ import annotations

import array
import os
import signal
import socket
import struct
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Optional

from cli_support import GRACEFUL, PY
from helpers import TIMEOUT, Child

MARK = """
import os, time
def mark(what):
    fd = os.open(os.environ["BUDGET_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{what} {time.monotonic():.6f}\\n".encode())
    os.close(fd)
"""

BACKEND = (
    MARK
    + """
import graceful, signal

@graceful.register
def backend_cleanup():
    mark("backend-cleanup-start")
    time.sleep(float(os.environ.get("BACKEND_SLOW", "0.3")))
    mark("backend-cleanup-done")

@graceful.main
def main():
    print("ready", flush=True)
    while True:
        time.sleep(1)

main()
"""
)

APP = (
    MARK
    + """
import subprocess, sys, graceful

backend = graceful.spawn(
    [sys.executable, "-u", "-c", os.environ["BUDGET_BACKEND"]], stdout=subprocess.PIPE, text=True
)
assert backend.stdout.readline() == "ready\\n"

@graceful.register
def app_cleanup():
    mark("app-cleanup-start")
    time.sleep(float(os.environ.get("APP_SLOW", "0.3")))
    mark("app-cleanup-done")

@graceful.main
def main():
    print("backend", backend.pid, flush=True)
    print("ready", flush=True)
    while True:
        time.sleep(1)

main()
"""
)


class Tree:
    """``graceful run OPTIONS -- python -c APP`` in a session of its own, started and ready."""

    def __init__(
        self, tmp: Path, options: list[str], env: Optional[dict[str, str]] = None, app: str = APP
    ) -> None:
        self.log = tmp / "marks.log"
        self.report = tmp / "receipts.jsonl"
        argv = [*GRACEFUL, "run", "--report", str(self.report), *options]
        argv += ["--", PY, "-u", "-c", textwrap.dedent(app)]
        full = {"BUDGET_LOG": str(self.log), "BUDGET_BACKEND": BACKEND, **(env or {})}
        full.pop("GRACEFUL_DEADLINE", None)
        self.child = Child(
            f"import os; os.execvp({argv[0]!r}, {argv!r})", env=full, start_new_session=True
        )
        self.child.wait_for("ready", TIMEOUT)

    @property
    def pid(self) -> int:
        return self.child.pid

    def marks(self) -> dict[str, float]:
        found = {}
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                what, at = line.split()
                found[what] = float(at)
        return found

    def receipts(self) -> list[dict[str, Any]]:
        from graceful.testing import read_receipts

        return read_receipts(self.report)


def kubelet(proc: subprocess.Popen[str], grace: float) -> tuple[float, float, bool]:
    """Kubernetes' stop: SIGTERM, then SIGKILL at ``grace`` if the container still runs.
    Returns (when SIGTERM was sent, when it ended, whether the SIGKILL was needed)."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return sent, time.monotonic(), False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(TIMEOUT)
        return sent, time.monotonic(), True


class NotifySocket:
    """A service manager's end of ``NOTIFY_SOCKET``: datagrams, with the sender's PID."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, timeout: float) -> Optional[tuple[int, dict[str, str], float]]:
        """One message: (sender PID, its fields, when it came); None after ``timeout``."""
        self.sock.settimeout(max(0.0, timeout))
        size = socket.CMSG_SPACE(struct.calcsize("3i"))
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, size)
        except (socket.timeout, BlockingIOError):
            return None
        at = time.monotonic()
        pid = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", payload[: struct.calcsize("3i")])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        return pid, fields, at

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


def systemd_stop(
    proc: subprocess.Popen[str], notify: NotifySocket, timeout_stop: float
) -> tuple[float, float, bool, list[tuple[int, dict[str, str], float]]]:
    """systemd's stop of a ``Type=notify`` service with ``NotifyAccess=main``: SIGTERM to the
    main process, SIGKILL at ``TimeoutStopSec`` unless the main process extended it with
    ``EXTEND_TIMEOUT_USEC`` (from the message on). Returns (sent, ended, SIGKILL needed,
    messages)."""
    sent = time.monotonic()
    kill_at = sent + timeout_stop
    messages: list[tuple[int, dict[str, str], float]] = []
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None:
        now = time.monotonic()
        if now >= kill_at:
            proc.kill()
            proc.wait(TIMEOUT)
            return sent, time.monotonic(), True, messages
        message = notify.receive(min(0.05, kill_at - now))
        if message is None:
            continue
        messages.append(message)
        pid, fields, at = message
        if pid == proc.pid and "EXTEND_TIMEOUT_USEC" in fields:
            kill_at = max(sent + timeout_stop, at + int(fields["EXTEND_TIMEOUT_USEC"]) / 1e6)
    ended = time.monotonic()
    while True:  # what was sent before it ended
        message = notify.receive(0)
        if message is None:
            return sent, ended, False, messages
        messages.append(message)
