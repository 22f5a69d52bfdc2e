"""What every benchmark of ``run.py`` shares: interleaving, statistics, targets, callgrind,
memory readings, and processes that are never left behind.

A figure is always graceful against a baseline measured in the same run, round by round
(baseline, graceful, baseline, graceful...): the ratio is taken per round, and the median and the
min-max of those ratios are reported (this machine is shared and noisy). Targets are checked
against the medians, as the issue states them; nothing here loosens one.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

#: Every process a benchmark starts carries this in its environment, so that leftovers can be
#: found (and only ours are ever killed) at the end of the run.
MARKER = "GRACEFUL_BENCH_RUN"

MIB = 1024 * 1024


# --- statistics --------------------------------------------------------------------------------


@dataclass
class Stats:
    median: float
    low: float
    high: float
    n: int
    samples: list[float] = field(repr=False)

    @classmethod
    def of(cls, samples: list[float]) -> Optional[Stats]:
        if not samples:
            return None
        return cls(statistics.median(samples), min(samples), max(samples), len(samples), samples)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]

    def as_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": self.n,
            "samples": self.samples,
        }


def ratios(graceful: list[float], base: list[float]) -> list[float]:
    """Per-round ratios (round i of graceful against round i of the baseline)."""
    return [g / b for g, b in zip(graceful, base) if b > 0]


def deltas(graceful: list[float], base: list[float]) -> list[float]:
    return [g - b for g, b in zip(graceful, base)]


def interleave(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Call each side once per round, in the order given (the baseline first), ``rounds`` times."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, measure in sides.items():
            samples[name].append(measure())
    return samples


# --- targets and figures -----------------------------------------------------------------------


@dataclass
class Target:
    """What the issue asks for. ``kind``: ``ratio`` (median ratio <= limit), ``delta`` (median
    graceful - baseline <= limit, in the figure's unit), ``value`` (median graceful <= limit)."""

    kind: str
    limit: float
    text: str

    def met(self, fig: Figure) -> Optional[bool]:
        stats = {"ratio": fig.ratio, "delta": fig.delta, "value": fig.graceful}[self.kind]
        if stats is None:
            return None
        return stats.median <= self.limit


def ratio_target(limit: float) -> Target:
    return Target("ratio", limit, f"<= {limit:g}x")


def delta_target(limit: float, unit: str) -> Target:
    return Target("delta", limit, f"<= +{limit:g} {unit}")


def value_target(limit: float, unit: str, text: str = "") -> Target:
    return Target("value", limit, text or f"<= {limit:g} {unit}")


@dataclass
class Figure:
    """One row of the table."""

    bench: str
    name: str
    baseline: str
    unit: str
    graceful: Optional[Stats] = None
    base: Optional[Stats] = None
    ratio: Optional[Stats] = None
    delta: Optional[Stats] = None
    target: Optional[Target] = None
    note: str = ""
    #: Set when the figure could not be measured (what is missing, and why).
    unavailable: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def paired(  # noqa: PLR0917  (a constructor: the columns of a row, in order)
        cls,
        bench: str,
        name: str,
        baseline: str,
        unit: str,
        graceful: list[float],
        base: list[float],
        target: Optional[Target] = None,
        note: str = "",
        **extra: Any,
    ) -> Figure:
        return cls(
            bench,
            name,
            baseline,
            unit,
            graceful=Stats.of(graceful),
            base=Stats.of(base),
            ratio=Stats.of(ratios(graceful, base)),
            delta=Stats.of(deltas(graceful, base)),
            target=target,
            note=note,
            extra=extra,
        )

    @property
    def verdict(self) -> str:
        if self.unavailable:
            return "N/A"
        if self.target is None:
            return "info"
        met = self.target.met(self)
        if met is None:
            return "N/A"
        return "ok" if met else "MISS"

    def miss_text(self) -> str:
        """The plain sentence for a missed target: the figure and the target."""
        assert self.target is not None
        kind = self.target.kind
        stats = {"ratio": self.ratio, "delta": self.delta, "value": self.graceful}[kind]
        assert stats is not None
        got = _fmt_kind(kind, stats.median, self.unit)
        why = f" ({self.note})" if "deadline" in self.note else ""
        return f"MISS: {self.bench} {self.name}: {got}, target {self.target.text}{why}"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Figure:
        """A figure as ``as_json`` wrote it (to render a saved run again)."""

        def st(s: Optional[dict[str, Any]]) -> Optional[Stats]:
            return None if s is None else Stats.of(list(s["samples"]))

        t = d.get("target")
        return cls(
            d["bench"],
            d["name"],
            d["baseline"],
            d["unit"],
            graceful=st(d.get("graceful")),
            base=st(d.get("baseline_values")),
            ratio=st(d.get("ratio")),
            delta=st(d.get("delta")),
            target=None if t is None else Target(t["kind"], t["limit"], t["text"]),
            note=d.get("note", ""),
            unavailable=d.get("unavailable", ""),
            extra=d.get("extra", {}),
        )

    def as_json(self) -> dict[str, Any]:
        def js(s: Optional[Stats]) -> Optional[dict[str, Any]]:
            return None if s is None else s.as_json()

        return {
            "bench": self.bench,
            "name": self.name,
            "baseline": self.baseline,
            "unit": self.unit,
            "graceful": js(self.graceful),
            "baseline_values": js(self.base),
            "ratio": js(self.ratio),
            "delta": js(self.delta),
            "target": None
            if self.target is None
            else {"kind": self.target.kind, "limit": self.target.limit, "text": self.target.text},
            "verdict": self.verdict,
            "note": self.note,
            "unavailable": self.unavailable,
            "extra": self.extra,
        }


def unavailable(bench: str, name: str, baseline: str, why: str, target: Optional[Target] = None):
    """A figure that could not be measured in this run (said plainly in the table)."""
    return Figure(bench, name, baseline, "", target=target, unavailable=why)


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _fmt_kind(kind: str, value: float, unit: str) -> str:
    if kind == "ratio":
        return fmt_ratio(value)
    if kind == "delta":
        return f"{value:+.3g} {unit}"
    return f"{value:.3g} {unit}"


def fmt(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6 and unit in ("instr", ""):
        text = f"{value / 1e6:.3g}M"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


# --- the run's context: processes, tools, logging ------------------------------------------------


class Context:
    """Shared by every benchmark of one run."""

    def __init__(self, *, quick: bool, python: str, verbose: bool, install: bool) -> None:
        self.quick = quick
        self.python = python
        self.verbose = verbose
        self.install = install
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="graceful-bench-"))
        self.env = dict(os.environ)
        self.env[MARKER] = self.run_id
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caching on, for both sides
        self.env.pop("GRACEFUL_TIMELINE", None)
        self.notes: list[str] = []

    def rounds(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def log(self, message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        env = dict(self.env)
        env.update(kwargs.pop("env", None) or {})
        return subprocess.Popen(argv, env=env, **kwargs)

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        env = dict(self.env)
        env.update(kwargs.pop("env", None) or {})
        kwargs.setdefault("timeout", 600)
        check = kwargs.pop("check", False)
        return subprocess.run(argv, env=env, check=check, **kwargs)

    def time_process(self, argv: list[str], *, timeout: float = 600, **kwargs: Any) -> float:
        """Seconds from ``Popen`` to the reaped exit of ``argv``, which must succeed (waited
        for with :func:`wait_exact`, never ``subprocess.run(timeout=...)``, which polls)."""
        env = dict(self.env)
        env.update(kwargs.pop("env", None) or {})
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, **kwargs)
        code = wait_exact(proc, timeout)
        elapsed = time.monotonic() - start
        if code != 0:
            raise subprocess.CalledProcessError(code, argv)
        return elapsed

    def py(self, code: str, *args: str) -> list[str]:
        """argv that runs a dedented snippet with the benchmark's Python."""
        return [self.python, "-c", textwrap.dedent(code), *args]

    def run_json(self, code: str, *args: str, timeout: float = 600, **kwargs: Any) -> Any:
        """Run a snippet that prints one JSON document as its last line; return it."""
        import json

        out = self.run(
            self.py(code, *args), capture_output=True, text=True, timeout=timeout, **kwargs
        )
        if out.returncode != 0:
            raise RuntimeError(f"benchmark worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes still alive that this run started (they carry the run's marker)."""
        found = []
        needle = f"{MARKER}={self.run_id}".encode()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if state in (b"Z", b"X"):
                continue
            found.append((int(name), cmd[:120]))
        return found

    def kill_leftovers(self) -> list[tuple[int, str]]:
        """Kill what this run left alive (only processes with our marker), and say what it was."""
        left = self.leftovers()
        for pid, _ in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return left

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_exact(proc: subprocess.Popen[Any], timeout: float) -> int:
    """Wait for ``proc`` to end and reap it; its return code. Blocks on a pidfd (a timer where
    there is none) instead of ``proc.wait(timeout)``, which polls: sleeps of 0.5, 1, 2, 4... ms,
    then 50 ms, so that a timed end is rounded up to 1, 3, 7, 15, 31, 63 ms, then a 50 ms step.
    Kills it and raises ``TimeoutError`` after ``timeout`` seconds."""
    pidfd_open = getattr(os, "pidfd_open", None)
    try:
        fd = pidfd_open(proc.pid) if pidfd_open is not None else -1
    except OSError:  # an old kernel; or it has been reaped already
        fd = -1
    if fd < 0:
        import threading

        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            return proc.wait()
        finally:
            timer.cancel()
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            proc.kill()
            proc.wait()
            raise TimeoutError(f"PID {proc.pid} still running after {timeout} s; killed")
    finally:
        os.close(fd)
    return proc.wait()


def reap(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Make sure a child we started is gone and reaped, its pipes closed."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def wait_line(proc: subprocess.Popen[Any], expect: str, timeout: float = 30.0) -> str:
    """Read lines from the child's stdout until one contains ``expect`` (bounded in time)."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {expect!r} line from PID {proc.pid} within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if isinstance(line, bytes):
            line = line.decode(errors="replace")
        if not line:
            err = ""
            if proc.stderr is not None:
                with contextlib.suppress(OSError, ValueError):
                    err = proc.stderr.read()
                    err = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise RuntimeError(f"PID {proc.pid} ended before {expect!r}: {err[-2000:]}")
        if expect in line:
            return line


# --- what the kernel says about a process ------------------------------------------------------


def status_field(pid: int, name: str) -> int:
    """A number from /proc/<pid>/status (``VmRSS`` in kB, ``Threads``...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def rss_mib(pid: int) -> float:
    return status_field(pid, "VmRSS") / 1024


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# --- instruction counts ------------------------------------------------------------------------


def valgrind() -> Optional[str]:
    return shutil.which("valgrind")


def perf_instructions_supported() -> str:
    """Whether ``perf stat -e instructions`` counts here (in a VM it often does not)."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf not installed"
    try:
        out = subprocess.run(
            [perf, "stat", "-x,", "-e", "instructions", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"perf failed: {exc}"
    text = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    if "not supported" in text or "not counted" in text or out.returncode != 0:
        return f"perf stat -e instructions: not supported here ({text or out.returncode})"
    return f"perf stat -e instructions works ({text})"


def instructions(ctx: Context, argv: list[str], *, timeout: float = 900) -> int:
    """Instructions executed by ``argv`` (the whole process), counted by callgrind."""
    tool = valgrind()
    if tool is None:
        raise RuntimeError("valgrind is not installed")
    fd, out_file = tempfile.mkstemp(prefix="callgrind.", dir=ctx.tmp)
    os.close(fd)
    env = {"PYTHONHASHSEED": "0"}
    try:
        result = ctx.run(
            [tool, "--tool=callgrind", f"--callgrind-out-file={out_file}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(f"callgrind run failed: {result.stderr[-2000:]}")
        text = Path(out_file).read_text(errors="replace")
        match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
        if match is None:
            raise RuntimeError("no summary line in the callgrind output")
        return int(match.group(1))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out_file)
