"""6. SIGTERM to reaped, after a readiness line, no cleanups.

Three programs that print ``ready`` and sleep: with the default disposition (the floor: the
kernel ends it), with a hand-written handler that exits (``sys.exit(128 + signum)``), and with
``@graceful.main``. The time is from ``kill()`` to ``waitpid()`` returning, in this process; the
three alternate round by round.
"""

from __future__ import annotations

import signal
import time

from _measure import Context, Figure, ratio_target, reap, wait_exact, wait_line

NAME = "sigterm"
TITLE = "SIGTERM to reaped, no cleanups"

PROGRAMS = {
    "default": """
import time
print("ready", flush=True)
time.sleep(60)
""",
    "by hand": """
import signal, sys, time
def handler(signum, frame):
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, handler)
print("ready", flush=True)
time.sleep(60)
""",
    "graceful": """
import time
import graceful
@graceful.main
def main():
    print("ready", flush=True)
    time.sleep(60)
main()
""",
}

#: Let the program get into its sleep after the line (the same for the three).
SETTLE = 0.02


def sigterm_to_reaped(ctx: Context, code: str) -> float:
    import subprocess

    proc = ctx.popen(ctx.py(code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(proc, "ready")
        time.sleep(SETTLE)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_exact(proc, 30)
        elapsed = time.monotonic() - start
        expected = {-signal.SIGTERM, 128 + signal.SIGTERM}
        if proc.returncode not in expected:
            raise RuntimeError(f"unexpected exit {proc.returncode}: {proc.stderr.read()[-500:]}")
        return elapsed * 1000
    finally:
        reap(proc)


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(30, 10)
    samples: dict[str, list[float]] = {k: [] for k in PROGRAMS}
    for code in PROGRAMS.values():
        sigterm_to_reaped(ctx, code)  # warm __pycache__
    for _ in range(rounds):
        for name, code in PROGRAMS.items():
            samples[name].append(sigterm_to_reaped(ctx, code))
    return [
        Figure.paired(
            NAME,
            "SIGTERM to reaped, @graceful.main",
            "hand-written handler that exits",
            "ms",
            samples["graceful"],
            samples["by hand"],
            ratio_target(1.2),
        ),
        Figure.paired(
            NAME,
            "SIGTERM to reaped, @graceful.main",
            "default disposition (floor)",
            "ms",
            samples["graceful"],
            samples["default"],
            note=f"hand-written/floor: median {_median_ratio(samples):.2f}x",
        ),
    ]


def _median_ratio(samples: dict[str, list[float]]) -> float:
    import statistics

    return statistics.median(h / d for h, d in zip(samples["by hand"], samples["default"]))
