"""What entering and leaving a guard costs, against installing the same handlers by hand.

Run: python benchmarks/guard_cost.py. Not part of the test suite. The baseline, measured in the
same run, is what any signal-handling code must do: signal.signal() for HUP, INT, QUIT and TERM,
then put the previous handlers back. Also: `import graceful` against `import signal, atexit`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import timeit

import graceful

SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def by_hand() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = [(s, signal.signal(s, handler)) for s in SIGNALS]
    for s, h in reversed(previous):
        signal.signal(s, h)


def with_guard() -> None:
    with graceful.guard():
        pass


def import_time(statement: str) -> float:
    best = float("inf")
    for _ in range(5):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t = time.perf_counter(); {statement}; "
                "print(time.perf_counter() - t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        best = min(best, float(out.stdout))
    return best


def main() -> None:
    with_guard()  # the first guard starts the helper thread once per process
    n = 20000
    base = min(timeit.repeat(by_hand, number=n, repeat=5)) / n
    guard = min(timeit.repeat(with_guard, number=n, repeat=5)) / n
    print(f"install + restore 4 handlers by hand: {base * 1e6:7.1f} us  (baseline)")
    print(f"with graceful.guard(): pass          : {guard * 1e6:7.1f} us  ({guard / base:.1f}x)")
    base_import = import_time("import signal, atexit, threading, logging")
    graceful_import = import_time("import graceful")
    print(f"import signal, atexit, threading, logging: {base_import * 1e3:6.1f} ms  (baseline)")
    print(
        f"import graceful                          : {graceful_import * 1e3:6.1f} ms  "
        f"({graceful_import / base_import:.1f}x)"
    )


if __name__ == "__main__":
    main()
