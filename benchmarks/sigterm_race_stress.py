"""Stress: fork N children that each wait in a guard, SIGTERM each, count the late ones.

Run: python benchmarks/sigterm_race_stress.py [N]. Not part of the test suite (it takes a while
and the race it looks for is rare). Each child announces it is in its guard, sleeping, and gets
SIGTERM; a child is "late" if it takes more than 1 s to die (its Python handler did not run and
only the deadline ended it). On Python 3.9/3.10, before the watcher re-delivered a signal the
handler had not picked up, about 1 child in 2,000 was late (another thread taking the GIL cleared
the main thread's "signal pending" flag just before it entered time.sleep). The baseline line is
the same loop without graceful (a plain SIGTERM kill), measured in the same run.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import graceful


def child(use_graceful: bool, ready_w: int) -> None:
    if use_graceful:
        with graceful.guard(timeout=2):
            os.write(ready_w, b"r")
            time.sleep(30)
    else:
        os.write(ready_w, b"r")
        time.sleep(30)
    os._exit(99)


def run(n: int, use_graceful: bool) -> tuple[float, int]:
    late = 0
    start = time.monotonic()
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(use_graceful, w)
        os.close(w)
        select.select([r], [], [], 10)
        os.read(r, 1)
        os.close(r)
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        if time.monotonic() - sent > 1.0 or os.waitstatus_to_exitcode(status) != -signal.SIGTERM:
            late += 1
    return (time.monotonic() - start) / n, late


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    base, _ = run(n, use_graceful=False)
    per, late = run(n, use_graceful=True)
    print(f"{sys.version.split()[0]}: {n} children each")
    print(f"  plain SIGTERM (baseline): {base * 1e3:6.2f} ms per child")
    ratio = per / base
    print(f"  graceful guard          : {per * 1e3:6.2f} ms per child ({ratio:.1f}x), late: {late}")


if __name__ == "__main__":
    main()
