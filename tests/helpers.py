"""Run Python snippets in real child processes, synchronised by readiness lines, never by sleeps."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, NoReturn, Optional

import pytest

TIMEOUT = 15.0  # the longest any single wait in the suite may take


class Child:
    """A Python child running ``code``; its stdout is read line by line in a thread."""

    def __init__(
        self,
        code: str,
        *,
        stdin: bool = False,
        env: Optional[dict[str, str]] = None,
        **popen: Any,
    ) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            **popen,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._queue), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], q: queue.Queue[Optional[str]]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    def wait_for(self, expected: str, timeout: float = TIMEOUT) -> None:
        """Read stdout until a line equal to ``expected``; fail on EOF or timeout."""
        self.wait_for_line(lambda line: line == expected, repr(expected), timeout)

    def wait_for_prefix(self, prefix: str, timeout: float = TIMEOUT) -> str:
        """Read stdout until a line that starts with ``prefix``; return it."""
        self.wait_for_line(lambda line: line.startswith(prefix), f"{prefix!r}...", timeout)
        return self.lines[-1]

    def wait_for_line(
        self, match: Callable[[str], bool], expected: str, timeout: float = TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {expected} within {timeout} s; got {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(TIMEOUT)
                raise AssertionError(
                    f"child ended (rc={self.proc.returncode}) before {expected}; "
                    f"stdout={self.lines} stderr={''.join(self._stderr)}"
                )
            self.lines.append(line)
            if match(line):
                return

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = TIMEOUT, stacks_signal: Optional[int] = None) -> int:
        """Wait for the child to end; collect all output; return the return code.

        If it is still running after ``timeout``, ``stacks_signal`` (one the child registered
        with ``faulthandler.register``) asks it for every thread's stack before it is killed:
        the failure then says where it hung."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if stacks_signal is not None:
                self.proc.send_signal(stacks_signal)
                with contextlib.suppress(AssertionError):
                    self.wait_for_stderr("most recent call first", 5.0)
            self.kill()
            self._collect()
            raise AssertionError(
                f"child still running after {timeout} s; stdout={self.lines} stderr={self.stderr}"
            ) from None
        self._collect()
        return rc

    def _collect(self) -> None:
        """Every line the readers got, once they have reached EOF."""
        for reader in self._readers:
            reader.join(TIMEOUT)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for_stderr(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait until ``text`` appears on stderr (read by a thread); fail on timeout."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} on stderr within {timeout} s: {self.stderr}")
            if self.proc.poll() is not None and text not in self.stderr:
                for reader in self._readers:
                    reader.join(TIMEOUT)
                if text not in self.stderr:
                    raise AssertionError(f"child ended before {text!r} on stderr: {self.stderr}")
            time.sleep(0.005)  # polling a buffer another thread fills, bounded by the deadline

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run(code: str, sig: Optional[int] = None, ready: str = "ready", **kwargs: Any) -> Child:
    """Start ``code``, optionally wait for ``ready`` and send ``sig``, and wait for the end."""
    child = Child(code, **kwargs)
    try:
        if sig is not None:
            child.wait_for(ready)
            child.send(sig)
        child.finish()
    finally:
        child.__exit__()
    return child


# --- whole programs that fork: a shared log, and a runner that leaves nothing behind ------------

#: Python source for ``log(*words)``: one O_APPEND write per line (lines never interleave across
#: processes), each line ending with the writer's PID. The script defines ``LOG`` (a path) first.
LOG_FUNCTION = """
def log(*words):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (" ".join(map(str, words)) + f" {os.getpid()}\\n").encode())
    finally:
        os.close(fd)
"""


def read_log(path: Path) -> list[list[str]]:
    """The lines ``log()`` wrote, split into words (the last word is the writer's PID)."""
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def start_script(args: list[str]) -> subprocess.Popen[str]:
    """Start ``python -u ARGS`` in its own session, so :func:`end_script` can kill its forks."""
    return subprocess.Popen(
        [sys.executable, "-u", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def end_script(proc: subprocess.Popen[str]) -> None:
    """Kill what is left of the script's process group, close the pipes and reap the script."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    with proc:  # closes the pipes, then waits (bounded: everything was just SIGKILLed)
        pass


def run_script(args: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """Run a script to its end; return code, stdout, stderr. Nothing of it outlives the call."""
    proc = start_script(args)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    finally:
        end_script(proc)


def skip_outside_ci(reason: str) -> NoReturn:
    """Skip on a developer's machine; under CI=true a skipped check is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run this test: {reason}", pytrace=False)
    pytest.skip(reason)
