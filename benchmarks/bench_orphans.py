"""9. Orphan detection after the parent's SIGKILL, against the parent's own reaping.

A parent program starts a Python child three ways: ``graceful.spawn`` (the kernel's
PR_SET_PDEATHSIG, armed by spawn's launcher, sends SIGTERM), ``graceful.spawn(...,
supervise=True)`` (the supervisor hears the parent die and forwards SIGTERM), and a plain
``subprocess.Popen`` of a child that calls ``graceful.die_with_parent()`` inside its guard (its
watcher thread notices, the guard runs the child's cleanup). The child writes
``time.monotonic()`` (one clock for every process) when its handler or cleanup runs. This process
SIGKILLs the parent; the baseline is how long until ``waitpid`` here returns for the parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from _measure import Context, Figure, reap, unavailable, value_target, wait_line

NAME = "orphans"
TITLE = "orphan detection after the parent's SIGKILL"

#: A child that is not a graceful program: a plain handler notes the time.
PLAIN_CHILD = """
import os, signal, sys, time
out = sys.argv[1]
def noticed(signum, frame):
    with open(out, "w") as f:
        f.write(repr(time.monotonic()))
    os._exit(0)
signal.signal(signal.SIGTERM, noticed)
print("ready", os.getpid(), flush=True)
time.sleep(60)
"""

#: A graceful child: die_with_parent() inside its guard; its cleanup notes the time.
DWP_CHILD = """
import os, sys, time
import graceful
out = sys.argv[1]
@graceful.register
def noticed():
    with open(out, "w") as f:
        f.write(repr(time.monotonic()))
with graceful.guard():
    graceful.die_with_parent()
    print("ready", os.getpid(), flush=True)
    time.sleep(60)
"""

PARENT = """
import inspect, subprocess, sys, time
import graceful
mode, out = sys.argv[1], sys.argv[2]
P = subprocess.PIPE
if mode == "spawn":
    child = graceful.spawn([sys.executable, "-c", PLAIN_CHILD, out], stdout=P)
elif mode == "supervise":
    if "supervise" not in inspect.signature(graceful.spawn).parameters:
        print("unsupported", flush=True)
        sys.exit(3)
    child = graceful.spawn([sys.executable, "-c", PLAIN_CHILD, out], stdout=P, supervise=True)
else:
    child = subprocess.Popen([sys.executable, "-c", DWP_CHILD, out], stdout=P)
line = child.stdout.readline().decode()
print(line.strip(), flush=True)
time.sleep(60)
"""

MODES = {
    "spawn": ("spawn (PR_SET_PDEATHSIG)", 10.0),
    "supervise": ("spawn(supervise=True)", 50.0),
    "die_with_parent": ("die_with_parent()", 50.0),
}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _sample(ctx: Context, mode: str) -> tuple[float, float] | None:
    """(detection ms, parent reaped ms), or None if this graceful lacks the mode."""
    out = ctx.tmp / f"noticed-{mode}"
    out.unlink(missing_ok=True)
    code = f"PLAIN_CHILD = {PLAIN_CHILD!r}\nDWP_CHILD = {DWP_CHILD!r}\n" + PARENT
    parent = ctx.popen(
        ctx.py(code, mode, str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    child = 0
    try:
        line = wait_line(parent, "", timeout=60)
        if line.startswith("unsupported"):
            return None
        child = int(line.split()[1])
        time.sleep(0.05)  # the child's watcher is blocked, the parent asleep
        start = time.monotonic()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        reaped = time.monotonic() - start
        deadline = time.monotonic() + 5
        while not (out.exists() and out.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: the child never noticed its parent's death")
            time.sleep(0.0005)
        noticed = float(out.read_text()) - start
        out.unlink()
        deadline = time.monotonic() + 5
        while child and not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.002)
        return noticed * 1000, reaped * 1000
    finally:
        reap(parent)
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(15, 5)
    noticed: dict[str, list[float]] = {m: [] for m in MODES}
    reaped: dict[str, list[float]] = {m: [] for m in MODES}
    missing: set[str] = set()
    for _ in range(rounds):
        for mode in MODES:
            if mode in missing:
                continue
            sample = _sample(ctx, mode)
            if sample is None:
                missing.add(mode)
                continue
            noticed[mode].append(sample[0])
            reaped[mode].append(sample[1])
    figures = []
    for mode, (label, limit) in MODES.items():
        target = value_target(limit, "ms")
        if mode in missing:
            figures.append(
                unavailable(
                    NAME,
                    f"orphan notices parent SIGKILL: {label}",
                    "the parent's own reaping",
                    "spawn(supervise=True) is not in this graceful: the cli branch is not "
                    "merged into main yet",
                    target,
                )
            )
            continue
        figures.append(
            Figure.paired(
                NAME,
                f"orphan notices parent SIGKILL: {label}",
                "the parent's own reaping",
                "ms",
                noticed[mode],
                reaped[mode],
                target,
            )
        )
    return figures
