"""12. An idle guarded process: RSS and threads, against the same process without graceful.

Both print ``ready`` and sleep; graceful's inside ``with graceful.guard():``. VmRSS and the thread
count are read from ``/proc/<pid>/status`` once the line is there; the two alternate.
"""

from __future__ import annotations

import subprocess
import time

from _measure import Context, Figure, delta_target, reap, status_field, wait_line

NAME = "idle"
TITLE = "idle guarded process: RSS and threads"

PROGRAMS = {
    "plain": """
import time
print("ready", flush=True)
time.sleep(60)
""",
    "graceful": """
import time
import graceful
with graceful.guard():
    print("ready", flush=True)
    time.sleep(60)
""",
}


def _sample(ctx: Context, code: str) -> tuple[float, int]:
    proc = ctx.popen(ctx.py(code), stdout=subprocess.PIPE, text=True)
    try:
        wait_line(proc, "ready")
        time.sleep(0.05)
        return status_field(proc.pid, "VmRSS") / 1024, status_field(proc.pid, "Threads")
    finally:
        reap(proc)


def run(ctx: Context) -> list[Figure]:
    rss: dict[str, list[float]] = {k: [] for k in PROGRAMS}
    threads: dict[str, list[float]] = {k: [] for k in PROGRAMS}
    for _ in range(ctx.rounds(10, 4)):
        for name, code in PROGRAMS.items():
            r, t = _sample(ctx, code)
            rss[name].append(r)
            threads[name].append(float(t))
    return [
        Figure.paired(
            NAME,
            "idle RSS",
            "the same process without graceful",
            "MiB",
            rss["graceful"],
            rss["plain"],
            delta_target(1.0, "MiB"),
        ),
        Figure.paired(
            NAME,
            "idle threads",
            "the same process without graceful",
            "threads",
            threads["graceful"],
            threads["plain"],
            note="stated, no target: the main thread and graceful's watcher",
        ),
    ]
