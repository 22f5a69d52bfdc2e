"""Run Python snippets in real child processes, synchronised by readiness lines, never by sleeps."""

from __future__ import annotations

import contextlib
import json
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

#: The signals graceful handles by default.
HANDLED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM]

#: Python source that turns core dumps off: a child that dies by SIGQUIT writes none.
NO_CORE = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"


def with_options(program: str, **options: object) -> str:
    """``program``, which passes ``**OPTIONS`` to graceful, preceded by ``OPTIONS = options``."""
    return f"OPTIONS = {options!r}\n" + program


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


def signal_timed(child: Child, sig: int, ready: str = "ready") -> float:
    """Wait for the line ``ready``, send ``sig`` and wait for the end; return the seconds from
    the signal to the end."""
    child.wait_for(ready)
    start = time.monotonic()
    child.send(sig)
    child.finish()
    return time.monotonic() - start


def timed(code: str, sig: int, ready: str = "ready", **kwargs: Any) -> tuple[Child, float]:
    """Start ``code``, then :func:`signal_timed`: the ended child, and the seconds it took."""
    with Child(code, **kwargs) as child:
        return child, signal_timed(child, sig, ready)


def timed_second(code: str, sig: int, during: str, ready: str = "ready") -> tuple[Child, float]:
    """Start ``code``, send ``sig`` at the line ``ready``, and again at the line ``during``: the
    ended child, and the seconds from the second signal to the end."""
    with Child(code) as child:
        child.wait_for(ready)
        child.send(sig)
        return child, signal_timed(child, sig, during)


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


# --- the every-step sweeps: a SIGTERM at each step of graceful's own code, one fork per step ----

#: Python source for the every-step sweeps (tests/test_*every_step.py), put before the script's
#: own ``scenario(k, log)``. ``signal_at(k, log)`` is a tracer that sends SIGTERM to its own
#: process at the k-th line event in graceful's code (at every bytecode in a function named in
#: ``exits``; ``on_module`` is called when a module's body starts), and the count of events.
#: ``sweep(scenario, last)`` runs ``scenario(k, log)`` in a forked child for k = 1, 2, ... until
#: ``last(code, lines)`` says the run got no signal (default: it did not end by SIGTERM) or k is
#: past ``most``, and prints every run as JSON: ``[k, exit code, logged lines]``. Each k runs in
#: a fork of one prepared process: a fork costs a millisecond, a fresh interpreter fifty.
EVERY_STEP = r"""
import json, os, select, signal, sys, time
import graceful

GRACEFUL = os.path.dirname(graceful.__file__)


def signal_at(k, log, exits=(), on_module=None):
    count = [0]

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(GRACEFUL):
            return None
        if event == "call":
            if frame.f_code.co_name in exits:
                frame.f_trace_opcodes = True  # an exit: every bytecode, up to the last one
            elif on_module is not None and frame.f_code.co_name == "<module>":
                on_module()
        if event == "line" or event == "opcode":
            count[0] += 1
            if count[0] == k:
                where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
                log("at", where, frame.f_code.co_name, frame.f_lasti)
                os.kill(os.getpid(), signal.SIGTERM)
        return tracer

    return tracer, count


def run(k, scenario):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        def log(*words):
            os.write(w, (json.dumps(words) + "\n").encode())
        code = 0
        try:
            scenario(k, log)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException as exc:
            log("escaped", type(exc).__name__, str(exc))
            code = 1
        os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + 60  # one k takes milliseconds: past this it hangs
    while True:
        if not select.select([r], [], [], max(0, deadline - time.monotonic()))[0]:
            os.kill(pid, signal.SIGKILL)  # reported as killed by SIGKILL: the test names this k
            chunks.append(b'["hung for 60 s"]\n')
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    lines = [json.loads(x) for x in b"".join(chunks).decode().splitlines()]
    return os.waitstatus_to_exitcode(status), lines


def sweep(scenario, last=lambda code, lines: code != -signal.SIGTERM, most=5000):
    # What a run imports (graceful loads modules on first use: a swept step) comes from a bytecode
    # cache next to this script, written by the first run that imports it: with no cache to read
    # (PYTHONDONTWRITEBYTECODE, as on CI, and no __pycache__ in the tree) every run compiled
    # graceful's lazily loaded modules again, three quarters of a run's CPU. The same bytecode
    # runs: the same line events, the same steps.
    sys.pycache_prefix = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "pycache")
    sys.dont_write_bytecode = False
    results = []
    k = 1
    while True:
        code, lines = run(k, scenario)
        results.append([k, code, lines])
        if last(code, lines) or k > most:
            break  # the first k past the end of graceful's code: no signal was sent
        k += 1
    print(json.dumps(results))
"""


def run_every_step(
    tmp_path: Path, scenario: str, args: list[str], timeout: float
) -> tuple[list[Any], str]:
    """Run :data:`EVERY_STEP` followed by ``scenario`` (which calls ``sweep``) with ``args``; check
    that it ended well with no traceback; return its runs (``[k, code, lines]``) and its stderr.
    ``timeout`` bounds the whole sweep only against a hang (each k is bounded by the script)."""
    script = tmp_path / "every_step.py"
    script.write_text(EVERY_STEP + scenario)
    rc, out, err = run_script([str(script), *args], timeout=timeout)
    assert rc == 0, err
    assert "Traceback" not in err, err
    return json.loads(out), err


def assert_skipped_only_at_the_end(
    signalled: list[Any], *, at_start: bool, last_acts: tuple[str, ...]
) -> None:
    """The registered cleanup ("global") is skipped only once the outermost guard has given the
    signal back (its last act: the previous disposition then ends the process, as outside any
    guard), so the runs that skip it are the last ones, and the first of them is in one of the
    functions ``last_acts``. With ``at_start``, the first runs may skip it too: the signal came
    before the guard took it."""
    skipped = [k for k, _, lines in signalled if ["global"] not in lines]
    prefix = [k for i, k in enumerate(skipped, 1) if k == i]
    suffix = skipped[len(prefix) :]
    assert not prefix or at_start, prefix
    if suffix:
        assert suffix == list(range(suffix[0], len(signalled) + 1)), suffix
        first = signalled[suffix[0] - 1][2]
        at = next(line for line in first if line[0] == "at")
        assert at[2] in last_acts, at
