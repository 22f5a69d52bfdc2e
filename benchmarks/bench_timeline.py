"""Issue 28, item 10: what the shutdown timeline costs each cleanup.

50 000 empty cleanups run the way a shutdown runs them (``Registry.take`` and ``run_logged``),
once without their timeline record (``timed=False``: the baseline, "running an empty cleanup")
and once with it, alternately in the same interpreter; the figure is the record's own cost (with
minus without) against the baseline, per cleanup. Four settings: nobody reads the timeline; the
program imported ``logging`` (level WARNING: INFO records are not logged); ``GRACEFUL_TIMELINE``
names a file; logging at INFO to a handler (``/dev/null``), where ``logging`` itself is most of
the cost. Target (the first three): the record costs at most 2x an empty cleanup.

    python benchmarks/run.py --only timeline
"""

from __future__ import annotations

from _measure import Context, Figure, ratio_target

NAME = "timeline"
TITLE = "the shutdown timeline's cost per cleanup"
N = 50_000

WORKER = """
import json, os, sys, tempfile, time
mode, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "file":
    fd, path = tempfile.mkstemp(prefix="graceful-bench-timeline-")
    os.close(fd)
    os.environ["GRACEFUL_TIMELINE"] = path
if mode in ("logging", "info"):
    import logging
    if mode == "info":
        logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
from graceful._core import registry, timeline
timeline.start(time.monotonic())  # inside a shutdown: t counts from its start

def empty():
    pass

def run(timed):
    reg = registry.Registry("cleanup")
    for _ in range(n):
        reg.add(empty, (), {})  # the same function again: the slow path, but not timed
    t = time.perf_counter()
    while True:
        entry = reg.take()
        if entry is None:
            break
        registry.run_logged(entry, "cleanup", timed=timed)
    return (time.perf_counter() - t) / n * 1e6

out = {"without": [], "with": []}
run(False)  # warm up
for _ in range(rounds):
    out["without"].append(run(False))
    out["with"].append(run(True))
if mode == "file":
    with open(path) as f:
        lines = sum(1 for _ in f)
    os.unlink(path)
    assert lines == n * rounds, (lines, n * rounds)
print(json.dumps(out))
"""

MODES = [
    ("none", "no logging, no GRACEFUL_TIMELINE", True),
    ("logging", "logging imported (WARNING)", True),
    ("file", "GRACEFUL_TIMELINE names a file", True),
    ("info", "logging at INFO to /dev/null", False),
]


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(7, 3)
    n = N if not ctx.quick else N // 5
    figures = []
    for mode, what, targeted in MODES:
        out = ctx.run_json(WORKER, mode, str(n), str(rounds))
        record = [w - wo for w, wo in zip(out["with"], out["without"])]
        figures.append(
            Figure.paired(
                NAME,
                f"timeline record per cleanup: {what}",
                "running an empty cleanup",
                "us",
                record,
                out["without"],
                ratio_target(2.0) if targeted else None,
                note=(
                    f"{n // 1000}k cleanups x{rounds}, alternately"
                    if targeted
                    else "logging's own formatting and handler are most of it"
                ),
            )
        )
    return figures
