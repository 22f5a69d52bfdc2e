"""8. psycopg 2 and 3 blocked in ``pg_sleep(60)``: SIGTERM to death, and the query left behind.

A real throwaway PostgreSQL (``tests/pgserver.py``: initdb into a temporary directory, Unix
socket only, run as the ``postgres`` user when we are root). The program connects, starts
``SELECT pg_sleep(60)``, and gets SIGTERM once ``pg_stat_activity`` shows its query running:

* graceful: ``@graceful.main`` and ``graceful.register_break(conn.cancel)``;
* baseline: the same program without graceful (SIGTERM's default action ends it).

The time is from ``kill()`` to ``waitpid()``; then ``pg_stat_activity`` says whether the query
still runs on the server (looked at for up to 1 s after the program died; a query left behind
is then terminated by this benchmark).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _measure import Context, Figure, reap, unavailable, value_target, wait_exact, wait_line

NAME = "psycopg"
TITLE = "psycopg 2 and 3 in pg_sleep(60): SIGTERM to death, query left"

PROGRAM = """
import sys
driver, dsn, side = sys.argv[1], sys.argv[2], sys.argv[3]
if driver == "psycopg2":
    import psycopg2
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
else:
    import psycopg
    conn = psycopg.connect(dsn, autocommit=True)
def work():
    print("ready", flush=True)
    conn.cursor().execute("SELECT pg_sleep(60)")
if side == "graceful":
    import graceful
    graceful.register_break(conn.cancel)
    graceful.main(work)()
else:
    work()
"""

DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg 3"}


def _active(admin: Any, app: str) -> bool:
    cur = admin.cursor()
    cur.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'active' AND query LIKE '%%pg_sleep%%'",
        (app,),
    )
    return bool(cur.fetchone()[0])


def _sample(  # noqa: PLR0917
    ctx: Context, server: Any, admin: Any, driver: str, side: str, n: int
) -> tuple[float, bool, int]:
    app = f"bench-{side}-{driver}-{n}"
    proc = ctx.popen(
        ctx.py(PROGRAM, driver, server.conninfo(application_name=app), side),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_line(proc, "ready")
        deadline = time.monotonic() + 10
        while not _active(admin, app):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{driver}/{side}: the query never showed up on the server")
            time.sleep(0.005)
        time.sleep(0.02)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_exact(proc, 30)
        died = (time.monotonic() - start) * 1000
        left = True
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if not _active(admin, app):
                left = False
                break
            time.sleep(0.01)
        return died, left, proc.returncode
    finally:
        reap(proc)
        cur = admin.cursor()
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )


def run(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    missing = [d for d in DRIVERS if not _importable(ctx, d)]
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        import pgserver
    except BaseException as exc:  # pytest missing, say
        return [_na(d, f"tests/pgserver.py cannot be imported: {exc}") for d in DRIVERS]
    bindir = pgserver.find_bindir()
    if bindir is None:
        why = "PostgreSQL server binaries not found (apt-get install postgresql)"
        return [_na(d, why) for d in DRIVERS]
    try:
        import psycopg2 as admin_driver
    except ImportError:
        return [_na(d, "psycopg2 is needed to watch the server") for d in DRIVERS]
    rounds = ctx.rounds(7, 3)
    try:
        with pgserver.running(bindir) as server:
            admin = admin_driver.connect(server.dsn)
            admin.autocommit = True
            try:
                for driver, label in DRIVERS.items():
                    if driver in missing:
                        figures.append(_na(driver, f"{driver} is not installed"))
                        continue
                    figures.extend(_measure_driver(ctx, server, admin, driver, label, rounds))
            finally:
                admin.close()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return [*figures, _na("server", f"the PostgreSQL server did not start: {exc}")]
    return figures


def _measure_driver(  # noqa: PLR0917
    ctx: Context, server: Any, admin: Any, driver: str, label: str, rounds: int
) -> list[Figure]:
    died: dict[str, list[float]] = {"plain": [], "graceful": []}
    left: dict[str, list[float]] = {"plain": [], "graceful": []}
    codes: dict[str, list[int]] = {"plain": [], "graceful": []}
    for i in range(rounds):
        for side in ("plain", "graceful"):
            t, q, code = _sample(ctx, server, admin, driver, side, i)
            died[side].append(t)
            left[side].append(float(q))
            codes[side].append(code)
    return [
        Figure.paired(
            NAME,
            f"{label}: SIGTERM to death",
            "the same program without graceful",
            "ms",
            died["graceful"],
            died["plain"],
            value_target(200.0, "ms", "<= 0.2 s"),
            returncodes=codes,
        ),
        Figure.paired(
            NAME,
            f"{label}: query still running after death (of {rounds})",
            "the same program without graceful",
            "runs",
            [sum(left["graceful"])],
            [sum(left["plain"])],
            value_target(0.0, "", "no query left"),
        ),
    ]


def _na(driver: str, why: str) -> Figure:
    return unavailable(NAME, f"{DRIVERS.get(driver, driver)}", "without graceful", why)


def _importable(ctx: Context, module: str) -> bool:
    out = ctx.run([ctx.python, "-c", f"import {module}"], capture_output=True)
    return out.returncode == 0
