"""Measure what docs/backends.md and docs/portability.md claim (not part of the test suite; Linux).

1. How fast a child notices that its parent was SIGKILLed, per mechanism, against the kernel's
   PR_SET_PDEATHSIG as the baseline: pidfd, lifeline pipe, getppid() polling.
2. Stopping N children that ignore SIGTERM: one shared deadline against one child at a time.
3. What graceful.spawn's launcher costs per child, against plain subprocess.Popen.
4. What each GRACEFUL_DISABLE fallback costs, measured in a fresh interpreter per setting:
   stopping cooperative children (pidfd wake-up against polling), stopping 200 that ignore
   SIGTERM, and a group whose leader exits first while a member still cleans up (/proc).
5. A ProcessPoolExecutor and a multiprocessing.Pool with long tasks under @graceful.main: SIGTERM
   to the end of the program, untracked (the guard's deadline) against graceful.track().

Run: python benchmarks/backends.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graceful._process.backend import Backend
from graceful._process.spawn import spawn
from graceful._process.stopping import shutdown

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


def _quiet_shutdown(backends: list[Backend]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shutdown(backends)


def cooperative_stop(n: int) -> float:
    """Median ms from the break to the reap of one child that exits at once on SIGTERM."""
    samples = []
    for _ in range(n):
        proc = subprocess.Popen(["sleep", "60"])
        start = time.monotonic()
        _quiet_shutdown([Backend(proc, signal.SIGTERM, 5.0, False)])
        samples.append(time.monotonic() - start)
    return statistics.median(samples) * 1000


def stubborn_stop(n: int) -> float:
    procs = stubborn(n)
    start = time.monotonic()
    _quiet_shutdown([Backend(p, signal.SIGTERM, 1.0, False) for p in procs])
    took = time.monotonic() - start
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()
    return took


GROUP = (
    """(trap 'sleep 0.3; echo cleaned > "$OUT"; exit 0' TERM; echo ready; """
    """while :; do sleep 0.05; done) & """
    "echo started; wait"
)


def group_leader_first() -> tuple[float, bool]:
    """A group whose leader (sh) exits at once on SIGTERM while a member cleans up for 0.3 s:
    seconds to stop it, and whether the member finished its cleanup."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cleaned"
        proc = subprocess.Popen(
            ["sh", "-c", GROUP],
            stdout=subprocess.PIPE,
            start_new_session=True,
            env=dict(os.environ, OUT=str(out)),
        )
        assert proc.stdout is not None
        assert sorted(proc.stdout.readline() for _ in range(2)) == [b"ready\n", b"started\n"]
        start = time.monotonic()
        _quiet_shutdown([Backend(proc, signal.SIGTERM, 2.0, True)])
        took = time.monotonic() - start
        time.sleep(0.5)  # a member still alive would have finished its cleanup by now
        return took, out.exists()


def fallback_costs() -> None:
    """Section 4, in this interpreter: its GRACEFUL_DISABLE is what the parent set."""
    import json

    from graceful._process import features

    took, cleaned = group_leader_first()
    print(
        json.dumps(
            {
                "disabled": sorted(features.disabled),
                "cooperative_ms": cooperative_stop(20),
                "stubborn_200_s": stubborn_stop(200),
                "group_s": took,
                "group_member_cleaned": cleaned,
            }
        )
    )


POOL_PROGRAM = """
import multiprocessing, sys, time, warnings
from concurrent.futures import ProcessPoolExecutor
import graceful

warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)

def task(i):
    time.sleep(60)

@graceful.main
def main():
    ctx = multiprocessing.get_context("fork")
    if sys.argv[1] == "executor":
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            if sys.argv[2] == "tracked":
                graceful.track(pool, timeout=1)
            results = pool.map(task, range(4))
            time.sleep(0.5)
            print("ready", flush=True)
            list(results)
    else:
        with ctx.Pool(2) as pool:
            if sys.argv[2] == "tracked":
                graceful.track(pool, timeout=1)
            result = pool.map_async(task, range(4))
            time.sleep(0.5)
            print("ready", flush=True)
            result.get()

if __name__ == "__main__":
    main()
"""


def pool_ending(kind: str, mode: str, path: Path) -> tuple[float, int]:
    path.write_text(POOL_PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, str(path), kind, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    took = time.monotonic() - start
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the orphaned workers of an untracked pool
    proc.stdout.close()
    return took, rc


def report_fallback_costs() -> None:
    print("4. GRACEFUL_DISABLE: what each fallback costs (a fresh interpreter per setting)")
    import json

    for value in ("", "pidfd", "proc", "pidfd,proc"):
        out = subprocess.run(
            [sys.executable, __file__, "--fallback-costs"],
            env=dict(os.environ, GRACEFUL_DISABLE=value),
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout)
        cleanup = "done" if r["group_member_cleaned"] else "cut"
        print(
            f"   {value or '(nothing hidden)':16} cooperative child {r['cooperative_ms']:6.2f} ms;"
            f" 200 ignoring TERM, timeout 1: {r['stubborn_200_s']:.3f} s;"
            f" group, leader first: {r['group_s']:.3f} s, member's cleanup {cleanup}"
        )


def report_pool_endings() -> None:
    print("5. SIGTERM to the end of a program blocked in a pool's with block (tasks: 60 s)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("executor", "pool"):
            for mode in ("untracked", "tracked"):
                took, rc = pool_ending(kind, mode, Path(tmp) / "pool_program.py")
                print(f"   {kind:8} {mode:9} {took:6.3f} s, return code {rc}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--children", type=int, default=20)
    parser.add_argument("--fallback-costs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fallback_costs:
        fallback_costs()
        sys.stdout.flush()
        os._exit(0)

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

    report_fallback_costs()
    report_pool_endings()
    sys.stdout.flush()
    os._exit(0)  # the spawned children are reaped; skip the tracker's exit-time cleanup


if __name__ == "__main__":
    main()
