"""Shared fixtures."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator

import pytest

import pgserver

# The tests' child programs must start with the default disposition of every signal they test,
# even when the suite itself was started with some of them ignored (`nohup`, or `&` in a script,
# which ignores SIGINT and SIGQUIT): an ignored disposition is inherited across exec.
for _name in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2"):
    _sig = getattr(signal, _name, None)
    if _sig is not None and signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler if _name == "SIGINT" else signal.SIG_DFL)

# Bytecode for the tests' child programs. Thousands of them import graceful (every forked run of
# a sweep, every program a test starts); with PYTHONDONTWRITEBYTECODE set (as on CI) and no
# __pycache__ in the tree, each compiled graceful's modules from source again: most of a sweep's
# CPU (found by the fastsweep helper with perf: the parser and compiler). The children write it
# once to a cache of their own, outside the tree, and read it after; the code they run is the same.
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(
    tempfile.gettempdir(), f"graceful-tests-pycache-{os.getuid()}"
)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# --- PostgreSQL (tests/pgserver.py) -----------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pgserver.PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole test session, on a Unix socket in a temp dir.

    Connect with `psycopg2.connect(postgres_server.dsn)` or `psycopg.connect(postgres_server.dsn)`
    (user and database `postgres`, trust auth); `postgres_server.conninfo(application_name=...)`
    adds libpq parameters, which is how a test tags its own sessions in `pg_stat_activity` (the
    server is shared by the session, so count only your own). Skips with an install hint when the
    server binaries are missing; under CI=true that skip is a failure. Stopped and deleted at the
    end of the session, even after failures.
    """
    bindir = pgserver.find_bindir()
    if bindir is None:
        pgserver.unavailable(pgserver.INSTALL_HINT)
    with pgserver.running(bindir) as server:
        yield server


# --- end PostgreSQL ---------------------------------------------------------------------------


# --- processes a test must not leave behind; Linux parts hidden (tests/backends_support.py) ----


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """A list of PIDs that are SIGKILLed at teardown if alive."""
    import backends_support  # loaded by the tests that use it, not by every test session

    yield from backends_support.leftovers_fixture()


@pytest.fixture
def disabled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """The Linux parts hidden from graceful for this test (parametrize with indirect=True)."""
    import backends_support

    return backends_support.disabled_fixture(getattr(request, "param", ""), monkeypatch)
