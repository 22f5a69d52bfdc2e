"""Issue 22: the conformance matrix. Every server of servers_support.SERVERS, alone and with
graceful's recipe, under every plan (TERM, INT, HUP, QUIT, TERM twice, INT twice, a drain), each
with a slow request or task in flight; its table is docs/servers.md's.

It takes a few minutes (cells run in parallel): it is part of `bash scripts/test`;
GRACEFUL_SERVER_MATRIX=0 leaves it out (.ci/run does so for every interpreter but its last, which
runs the whole suite; the servers' core subset, tests/test_servers.py, runs on every one).
GRACEFUL_WRITE_SERVERS_MD=1 rewrites docs/servers.md from the run instead of checking it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import servers_support
from test_servers import check_graceful_cell

pytestmark = pytest.mark.skipif(
    os.environ.get("GRACEFUL_SERVER_MATRIX") == "0",
    reason="GRACEFUL_SERVER_MATRIX=0: the whole matrix runs on .ci/run's last Python",
)

PARALLEL = 4  # cells at once: each is mostly waiting (a 1.5 s request, a 1 s drain)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers_support.Redis]:
    server = servers_support.Redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


#: Each server's cells, as test_every_plan ran them (one test per server: each stays well
#: inside pytest's faulthandler_timeout), and the wall time of each.
_RUN: dict[str, list[servers_support.Cell]] = {}
_WALL: dict[str, float] = {}


def _run_server(server: str, broker: str) -> list[servers_support.Cell]:
    if server not in _RUN:
        keys = [
            (server, mode, plan)
            for mode in servers_support.MODES
            for plan in servers_support.PLANS
            if not (servers_support.SERVERS[server].tasks and plan.endswith("drain"))
        ]
        started = time.monotonic()
        _RUN[server] = servers_support.run_cells(keys, PARALLEL, broker=broker)
        _WALL[server] = time.monotonic() - started
    return _RUN[server]


@pytest.mark.parametrize("server", list(servers_support.SERVERS))
def test_every_plan(server: str, redis: servers_support.Redis) -> None:
    cells = _run_server(server, redis.url)
    print(f"\n{server}: {len(cells)} cells in {_WALL[server]:.1f} s")
    print(servers_support.summary(cells))


@pytest.fixture(scope="module")
def cells(redis: servers_support.Redis) -> list[servers_support.Cell]:
    every = [c for server in servers_support.SERVERS for c in _run_server(server, redis.url)]
    print(f"\nconformance matrix: {len(every)} cells in {sum(_WALL.values()):.1f} s")
    return every


#: Where graceful promises the whole ending: one signal (or a drain) with work in flight.
PROMISED = ("TERM", "INT", "HUP", "QUIT", "TERM, drain")


def test_graceful_keeps_its_promises_under_every_server(
    cells: list[servers_support.Cell], redis: servers_support.Redis
) -> None:
    by_key = {c.key: c for c in cells}
    failures = []
    for cell in cells:
        if cell.mode != "graceful" or cell.plan not in PROMISED:
            continue
        server = servers_support.SERVERS[cell.server]
        alone = by_key.get((cell.server, "alone", cell.plan))
        if cell.plan == "HUP" and server.hup_reloads:
            continue  # the server reloads: its own business (the row says what happened)
        if cell.plan in server.not_promised:
            continue  # graceful's recipe cannot change it (the row says what happens)
        # Once more only where the work never reached the server (uvicorn's --workers on a busy
        # machine: its workers sometimes never take the request), which says nothing of
        # graceful; any other failure counts at once.
        trial = cell
        for _ in range(2):
            if trial.request != "not taken":
                break
            trial = servers_support.run_cell(*cell.key, broker=redis.url)
        try:
            check_graceful_cell(trial, alone)
        except AssertionError as exc:
            failures.append(f"{cell.server} / {cell.plan}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_graceful_leaves_no_process_behind(cells: list[servers_support.Cell]) -> None:
    left = [
        f"{c.server} {c.plan}: {c.orphans} ({servers_support.report(c)})"
        for c in cells
        if c.mode == "graceful"
        and c.orphans
        and c.plan not in servers_support.SERVERS[c.server].not_promised
    ]
    assert not left, left


def test_docs_servers_md_is_the_matrix(
    cells: list[servers_support.Cell], redis: servers_support.Redis
) -> None:
    document = servers_support.DOCS.read_text()
    assert document.count(servers_support.BEGIN) == 1
    assert document.count(servers_support.END) == 1
    if os.environ.get("GRACEFUL_WRITE_SERVERS_MD") == "1":
        # The table of a server whose shutdown varies (celery) is that of runs that ended.
        for cell in list(cells):
            if servers_support.SERVERS[cell.server].varies and cell.ended.endswith("hangs"):
                for _ in range(2):
                    again = servers_support.run_cell(*cell.key, broker=redis.url)
                    if not again.ended.endswith("hangs"):
                        cells = [again if c.key == cell.key else c for c in cells]
                        break
        Path(servers_support.DOCS).write_text(servers_support.with_table(document, cells))
        return
    # What the servers do alone depends, for a few plans, on where in their own shutdown the
    # second signal lands (gunicorn's quick stop, asyncio.run's second Ctrl-C): the "alone"
    # columns are those of the run that wrote the table, and the test compares what graceful
    # gives, which must not vary. A server whose own shutdown varies from run to run even with
    # graceful (celery, uvicorn's --workers supervisor) has its rows from one run; graceful's
    # promises are checked on them above.
    wanted = servers_support.rows(document)
    got = servers_support.rows(servers_support.with_table(document, cells))
    assert set(got) == set(wanted), "rows added or removed: regenerate docs/servers.md"
    steady = [key for key in wanted if not servers_support.SERVERS[key[0]].varies]
    differ = [
        f"docs: {wanted[key]}\nrun:  {got[key]}"
        for key in steady
        if servers_support.graceful_part(got[key]) != servers_support.graceful_part(wanted[key])
    ]
    assert not differ, (
        "docs/servers.md disagrees with this run of the matrix; if the servers changed, "
        "regenerate it: GRACEFUL_WRITE_SERVERS_MD=1 bash scripts/test "
        "tests/test_servers_matrix.py\n" + "\n".join(differ)
    )
