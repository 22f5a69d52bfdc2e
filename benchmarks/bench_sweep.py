"""12. ``graceful.testing.sweep`` of a 50-line program with a guarded block, against one plain run.

The program (``PROGRAM``, 50 lines) fills an in-memory SQLite table and writes a file inside
``with graceful.guard():``; the sweep sends SIGTERM at every line of it that runs (about 40
points: the module's top level, the guarded block and the functions it calls), one run per
point on every core, and checks each run (died by SIGTERM, nothing left, the cleanup at most
once). Per round, alternating: five plain ``graceful.testing.run`` of the same program (the
baseline, their median: what one run costs through the harness), then one whole sweep.
Reported: the sweep's wall time (the issue: "a few seconds, not minutes"), the wall time per
point, and the cost per point in core-seconds (wall time x cores / runs, so the counting run
and the tracer are included) against the plain run. Alone: ``python benchmarks/bench_sweep.py``.
"""

from __future__ import annotations

import os
import sys

from _measure import Context, Figure, ratio_target, value_target

NAME = "sweep"
TITLE = "graceful.testing.sweep of a 50-line program vs one plain run of it"

PROGRAM = '''\
"""A 50-line program: a guarded block that writes a table and a file, then reports."""
import os
import sqlite3

import graceful

OUT = os.path.join(os.environ.get("GRACEFUL_SWEEP_DIR", "."), "report.txt")


def load(db, rows):
    db.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price INT)")
    for i in range(rows):
        db.execute("INSERT INTO item (name, price) VALUES (?, ?)", (f"item{i}", i * 3))
    db.commit()


def total(db):
    (value,) = db.execute("SELECT sum(price) FROM item").fetchone()
    return value


def write_report(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"total {value}\\n")
    os.replace(tmp, path)


def close(db):
    db.rollback()  # what load() did not commit
    db.close()
    print("closed", flush=True)


def main():
    print("start", flush=True)
    db = sqlite3.connect(":memory:")
    with graceful.guard() as g:
        g.register(close, db)
        load(db, 3)
        value = total(db)
        write_report(OUT, value)
        if value != 9:
            raise SystemExit(f"wrong total {value}")
        print("report written", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''

WORKER = """
import json, os, statistics, sys, time
from graceful.testing import run, sweep

path, rounds, plains = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = dict(os.environ, GRACEFUL_SWEEP_DIR=os.path.dirname(path))


def check(result):
    result.died_by("TERM").no_orphans()
    assert result.stdout.count("closed") <= 1, result.stdout


out = {"plain": [], "sweep": [], "per_point": [], "core_per_point": [], "points": 0,
       "jobs": os.cpu_count()}
for _ in range(rounds):
    one = []
    for _ in range(plains):
        t = time.monotonic()
        run(script=path, env=env, signal=None).exited_with(0)
        one.append(time.monotonic() - t)
    out["plain"].append(statistics.median(one))
    t = time.monotonic()
    swept = sweep(script=path, check=check)  # every line of the program that runs
    wall = time.monotonic() - t
    out["sweep"].append(wall)
    out["points"] = len(swept.runs)
    out["per_point"].append(wall / len(swept.runs))
    out["core_per_point"].append(wall * swept.jobs / len(swept.runs))
    print(swept.summary(), file=sys.stderr)
print(json.dumps(out))
"""


def run(ctx: Context) -> list[Figure]:
    path = ctx.tmp / "program.py"
    path.write_text(PROGRAM)
    assert len(PROGRAM.splitlines()) == 50
    rounds = ctx.rounds(3, 1)
    out = ctx.run_json(WORKER, str(path), str(rounds), "5")
    note = f"{out['points']} points, {out['jobs']} cores, {rounds} rounds"
    return [
        Figure.paired(
            NAME,
            "whole sweep (every line that runs)",
            "one plain run",
            "s",
            out["sweep"],
            out["plain"],
            value_target(10.0, "s", "a few seconds: <= 10 s"),
            note=note,
        ),
        Figure.paired(
            NAME,
            "wall time per point",
            "one plain run",
            "s",
            out["per_point"],
            out["plain"],
            ratio_target(1.5),
            note=note,
        ),
        Figure.paired(
            NAME,
            "core-seconds per point",
            "one plain run",
            "s",
            out["core_per_point"],
            out["plain"],
            ratio_target(2.0),
            note="wall x cores / runs: the counting run and the tracer included",
        ),
    ]


if __name__ == "__main__":
    context = Context(
        quick="--quick" in sys.argv, python=sys.executable, verbose=True, install=False
    )
    print(f"load average before: {os.getloadavg()}")
    for figure in run(context):
        assert figure.graceful is not None
        assert figure.base is not None
        assert figure.ratio is not None
        print(
            f"{figure.name}: {figure.graceful.median:.3f} s against {figure.baseline} "
            f"{figure.base.median:.3f} s, ratio {figure.ratio.median:.2f}x "
            f"[{figure.ratio.low:.2f}-{figure.ratio.high:.2f}], target "
            f"{figure.target.text if figure.target else '-'}: {figure.verdict} ({figure.note})"
        )
    print(f"load average after: {os.getloadavg()}")
