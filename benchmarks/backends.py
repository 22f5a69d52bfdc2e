"""Measure what issue 5 claims (not part of the test suite; Linux only).

1. How fast a child notices that its parent was SIGKILLed, per mechanism, against the kernel's
   PR_SET_PDEATHSIG as the baseline: pidfd, lifeline pipe, getppid() polling.
2. Stopping N children that ignore SIGTERM: one shared deadline against one child at a time.
3. What graceful.spawn's launcher costs per child, against plain subprocess.Popen.

Run: python benchmarks/backends.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graceful._process.backend import Backend
from graceful._process.stopping import shutdown
from graceful._process.spawn import spawn

CHILD = """
import os, signal, sys, time
from graceful._core import libc as _prctl
from graceful._process.parent_death import watch_parent

method, lifeline, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def noticed(*_):
    with open(out, "w") as f:
        f.write(repr(time.monotonic()))
    os._exit(0)

signal.signal(signal.SIGTERM, noticed)
if method == "prctl":
    _prctl.set_pdeathsig(signal.SIGTERM)
else:
    watch_parent(signal.SIGTERM, method=method, lifeline=lifeline)
print("ready", flush=True)
time.sleep(60)
"""

PARENT = """
import os, subprocess, sys
lifeline, keep = os.pipe()
child = subprocess.Popen([sys.executable, "-c", CHILD, sys.argv[1], str(lifeline), sys.argv[2]],
                         pass_fds=(lifeline,), stdout=subprocess.PIPE)
assert child.stdout.readline() == b"ready\\n"
print("ready", flush=True)
sys.stdin.read()
"""


def detection_latency(method: str, out: Path) -> float:
    code = f"CHILD = {CHILD!r}\n" + PARENT
    parent = subprocess.Popen(
        [sys.executable, "-c", code, method, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline() == b"ready\n"
    start = time.monotonic()
    parent.kill()
    parent.wait()
    deadline = start + 5
    while not out.exists() or not out.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{method}: the child never noticed")
        time.sleep(0.0005)
    latency = float(out.read_text()) - start
    out.unlink()
    for stream in (parent.stdin, parent.stdout):
        if stream is not None:
            stream.close()
    return latency


def stubborn(n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(n):
        proc = subprocess.Popen(
            ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        procs.append(proc)
    return procs


def one_at_a_time(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """The naive loop: terminate, wait, kill, for each child in turn."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--children", type=int, default=20)
    args = parser.parse_args()

    print(f"1. parent SIGKILLed -> child's handler ran ({args.rounds} rounds, ms)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "noticed"
        results = {}
        for method in ("prctl", "pidfd", "lifeline", "poll"):
            samples = sorted(detection_latency(method, out) for _ in range(args.rounds))
            results[method] = statistics.median(samples)
            p90 = samples[int(len(samples) * 0.9) - 1]
            print(
                f"   {method:9} median {results[method] * 1000:7.2f}  p90 {p90 * 1000:7.2f}  "
                f"x{results[method] / results['prctl']:.1f} the prctl baseline"
            )

    n, timeout = args.children, 0.2
    print(f"2. stopping {n} children that ignore SIGTERM, timeout {timeout} s each")
    procs = stubborn(n)
    start = time.monotonic()
    one_at_a_time(procs, timeout)
    naive = time.monotonic() - start
    procs = stubborn(n)
    start = time.monotonic()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shutdown([Backend(p, signal.SIGTERM, timeout, False) for p in procs])
    shared = time.monotonic() - start
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()
    print(f"   one at a time {naive:.3f} s; shared deadline {shared:.3f} s; x{naive / shared:.1f}")

    rounds = args.rounds
    print(f"3. starting `true` ({rounds} rounds, ms per child)")
    start = time.monotonic()
    for _ in range(rounds):
        subprocess.Popen(["true"]).wait()
    plain = (time.monotonic() - start) / rounds
    start = time.monotonic()
    for _ in range(rounds):
        spawn(["true"]).wait()
    launched = (time.monotonic() - start) / rounds
    print(
        f"   Popen {plain * 1000:.2f}; spawn {launched * 1000:.2f} "
        f"(x{launched / plain:.1f} the Popen baseline)"
    )
    sys.stdout.flush()
    os._exit(0)  # the spawned children are reaped; skip the tracker's exit-time cleanup


if __name__ == "__main__":
    main()
