"""What the supervisor costs (not part of the test suite; Linux only).

1. Start time: how long until ``subprocess.Popen``, ``graceful.spawn`` and
   ``graceful.spawn(supervise=True)`` return with ``sleep 60`` running (median of N).
2. Memory of a running supervisor: RSS and PSS (``/proc/<pid>/smaps_rollup``; PSS shares the
   interpreter's pages fairly among the processes that map them).
3. ``graceful run -- true`` end to end, against ``true`` alone.
4. How long after the parent's SIGKILL a supervised backend that ignores SIGTERM is gone.

Run: python benchmarks/cli_costs.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import graceful
from graceful._process.spawn import ORPHAN_TIMEOUT


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def start_times(rounds: int) -> dict[str, list[float]]:
    kinds = {
        "subprocess.Popen": lambda: subprocess.Popen(["sleep", "60"]),
        "graceful.spawn": lambda: graceful.spawn(["sleep", "60"]),
        "graceful.spawn(supervise=True)": lambda: graceful.spawn(["sleep", "60"], supervise=True),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for name, start in kinds.items():
            t = time.perf_counter()
            proc = start()
            times[name].append(time.perf_counter() - t)
            proc.terminate()
            proc.wait()
    return times


def supervisor_memory() -> tuple[tuple[int, int], tuple[int, int]]:
    """(supervisor RSS/PSS, plain sleep RSS/PSS) for a supervised ``sleep 60``."""
    proc = graceful.spawn(
        ["sh", "-c", "echo $$; exec sleep 60"], supervise=True, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    backend = int(proc.stdout.readline())
    try:
        return memory(proc.pid), memory(backend)
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


def run_times(rounds: int) -> dict[str, list[float]]:
    commands = {
        "true": ["true"],
        "graceful run -- true": [sys.executable, "-m", "graceful", "run", "--", "true"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            t = time.perf_counter()
            subprocess.run(argv, check=True)
            times[name].append(time.perf_counter() - t)
    return times


ORPHANING_PARENT = """
import subprocess, sys, time, graceful
proc = graceful.spawn(["sh", "-c", "trap '' TERM; echo $$; exec sleep 60"], supervise=True,
                      stdout=subprocess.PIPE, text=True)
print(proc.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def orphan_latency() -> float:
    """Parent SIGKILLed -> the supervised backend (which ignores SIGTERM) is gone."""
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_PARENT], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    backend = int(parent.stdout.readline())
    parent.kill()
    t = time.perf_counter()
    parent.wait()
    parent.stdout.close()
    while True:
        try:
            with open(f"/proc/{backend}/stat") as f:
                if f.read().split(")")[-1].split()[0] in ("Z", "X"):
                    break
        except OSError:  # gone (ENOENT), or going while we read (ESRCH)
            break
        time.sleep(0.001)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {rounds}")
    print("\nstart time, until the call returns with the program running:")
    for name, values in start_times(rounds).items():
        print(f"  {name:32} {statistics.median(values) * 1000:7.1f} ms")
    (s_rss, s_pss), (b_rss, b_pss) = supervisor_memory()
    print("\nmemory of a running supervised `sleep 60`:")
    for name, rss, pss in (("supervisor", s_rss, s_pss), ("sleep itself", b_rss, b_pss)):
        print(f"  {name:32} RSS {rss / 1024:5.1f} MiB, PSS {pss / 1024:5.1f} MiB")
    print("\nend to end, start to exit:")
    for name, values in run_times(rounds).items():
        print(f"  {name:32} {statistics.median(values) * 1000:7.1f} ms")
    gone = [orphan_latency() for _ in range(max(3, rounds // 4))]
    print(
        "\nparent SIGKILLed -> supervised backend ignoring SIGTERM gone: "
        f"median {statistics.median(gone) * 1000:.0f} ms, max {max(gone) * 1000:.0f} ms "
        f"({ORPHAN_TIMEOUT:g} s of it is the grace period)"
    )
    signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    main()
