"""1. ``import graceful`` against ``import signal, atexit``: wall time, RSS, extra modules.

Each sample is a fresh interpreter that times only the import statement (``perf_counter``
around it) and reads its own VmRSS before and after; ``__pycache__`` is warm for both sides
(each is imported once before timing). Callgrind counts the instructions of both whole
processes, a figure that does not move with the machine's load, and ``-X importtime`` says where
graceful's time goes (kept in the JSON, for FINDINGS.md).
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from _measure import Context, Figure, delta_target, instructions, valgrind

NAME = "import"
TITLE = "import graceful vs import signal, atexit"

WORKER = """
import sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
before = set(sys.modules)
r0 = rss()
t0 = time.perf_counter()
{statement}
t1 = time.perf_counter()
r1 = rss()
new = sorted(set(sys.modules) - before)
import json
print(json.dumps({{"t": t1 - t0, "rss_kb": r1 - r0, "modules": new}}))
"""

BASELINE = "import signal, atexit"
GRACEFUL = "import graceful"


def _sample(ctx: Context, statement: str) -> dict[str, Any]:
    result: dict[str, Any] = ctx.run_json(WORKER.format(statement=statement))
    return result


def importtime(ctx: Context, rounds: int) -> list[tuple[str, float, float]]:
    """(module, median self us, median cumulative us) for graceful's import, biggest self first."""
    selfs: dict[str, list[float]] = {}
    cumul: dict[str, list[float]] = {}
    for _ in range(rounds):
        out = ctx.run(
            [ctx.python, "-X", "importtime", "-c", GRACEFUL], capture_output=True, text=True
        )
        for line in out.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if not m:
                continue
            name = m.group(4)
            selfs.setdefault(name, []).append(float(m.group(1)))
            cumul.setdefault(name, []).append(float(m.group(2)))
    rows = [(n, statistics.median(v), statistics.median(cumul[n])) for n, v in selfs.items()]
    rows.sort(key=lambda r: -r[1])
    return rows


def run(ctx: Context) -> list[Figure]:
    for statement in (BASELINE, GRACEFUL):  # warm __pycache__ for both sides
        _sample(ctx, statement)
    rounds = ctx.rounds(21, 7)
    base: list[dict[str, Any]] = []
    grace: list[dict[str, Any]] = []
    for _ in range(rounds):
        base.append(_sample(ctx, BASELINE))
        grace.append(_sample(ctx, GRACEFUL))
    extra_modules = sorted(set(grace[0]["modules"]) - set(base[0]["modules"]))
    figures = [
        Figure.paired(
            NAME,
            "import wall time",
            BASELINE,
            "ms",
            [s["t"] * 1000 for s in grace],
            [s["t"] * 1000 for s in base],
            delta_target(1.5, "ms"),
        ),
        Figure.paired(
            NAME,
            "import RSS growth",
            BASELINE,
            "MiB",
            [s["rss_kb"] / 1024 for s in grace],
            [s["rss_kb"] / 1024 for s in base],
            delta_target(1.0, "MiB"),
        ),
        Figure.paired(
            NAME,
            "modules imported",
            BASELINE,
            "modules",
            [float(len(s["modules"])) for s in grace],
            [float(len(s["modules"])) for s in base],
            note=f"{len(extra_modules)} more than the baseline",
            extra_modules=extra_modules,
        ),
    ]
    if valgrind() is not None:
        n = ctx.rounds(3, 1)
        ib, ig = [], []
        for _ in range(n):
            ib.append(instructions(ctx, [ctx.python, "-c", BASELINE]) / 1e6)
            ig.append(instructions(ctx, [ctx.python, "-c", GRACEFUL]) / 1e6)
        figures.append(
            Figure.paired(
                NAME,
                "whole process, instructions (callgrind)",
                f"python -c '{BASELINE}'",
                "M instr",
                ig,
                ib,
                note="load-independent cross-check of the wall time",
            )
        )
    top = importtime(ctx, ctx.rounds(7, 3))
    figures[0].extra["importtime_top"] = [
        {"module": n, "self_us": s, "cumulative_us": c} for n, s, c in top[:40]
    ]
    return figures
