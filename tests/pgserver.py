"""A throwaway PostgreSQL cluster for tests, built from the machine's own server binaries.

`running(bindir)` runs `initdb` into a fresh temporary directory, starts the server with `pg_ctl`
listening only on a Unix socket inside that directory (no TCP port, so it cannot collide with a
real server or another test run), and on the way out stops it and removes the directory, even when
start-up or the tests failed. `initdb` refuses to run as root, so when we are root every server
command runs as the `postgres` user and the directory is handed to that user. Every wait has a
timeout.

The cluster trusts local connections: connect as user `postgres` to database `postgres` with
`PostgresServer.dsn` (a libpq conninfo string that psycopg2 and psycopg 3 both accept).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Optional

from helpers import skip_outside_ci

#: The OS user that owns and runs the cluster when the tests run as root.
OS_USER = "postgres"
#: libpq's limit for a Unix socket path is 107 bytes; keep the directory short.
_MAX_SOCKET_DIR = 80
#: Seconds allowed for initdb, and for each pg_ctl start/stop.
INITDB_TIMEOUT = 120.0
PG_CTL_TIMEOUT = 60

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them, e.g. "
    "`apt-get install postgresql-15` on Debian/Ubuntu, `dnf install postgresql-server` on "
    "Fedora, or `brew install postgresql@15` on macOS; or set GRACEFUL_PG_BINDIR to the "
    "directory that holds initdb and pg_ctl. (Under CI=true this is a failure, not a skip.)"
)


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster; `dsn` is what you pass to psycopg2.connect / psycopg.connect."""

    host: str  # the directory holding the Unix socket (libpq takes a directory as host)
    port: int
    datadir: Path
    logfile: Path
    user: str = "postgres"
    dbname: str = "postgres"

    @property
    def dsn(self) -> str:
        return self.conninfo()

    def conninfo(self, **params: Any) -> str:
        """The DSN plus extra libpq parameters, e.g. `conninfo(application_name="t1")`."""
        items = {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname}
        items.update(params)
        return " ".join(f"{key}={_quote(str(value))}" for key, value in items.items())

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, for failure messages."""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _quote(value: str) -> str:
    """Quote a conninfo value when it needs it (libpq syntax: single quotes, backslash escapes)."""
    if value and re.fullmatch(r"[\w./:@-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, but fail it under CI=true: CI must always run the PostgreSQL tests."""
    skip_outside_ci(f"{reason} (the PostgreSQL tests)")


def import_driver(name: str) -> Any:
    """Import psycopg2 or psycopg, skipping (failing under CI) with an install hint if absent."""
    try:
        return __import__(name)
    except ImportError as exc:
        unavailable(
            f"{name} is not installed ({exc}); install the test extra: pip install -e '.[test]'"
        )


def find_bindir() -> Optional[Path]:
    """The directory holding initdb and pg_ctl, or None.

    $GRACEFUL_PG_BINDIR, when set, is the only place looked at. Otherwise: `pg_config --bindir`
    (which on Debian may name /usr/bin, where only the client tools live), then
    /usr/lib/postgresql/<version>/bin (newest first), then PATH.
    """
    candidates: list[Path] = []
    if os.environ.get("GRACEFUL_PG_BINDIR"):
        return _has_server_tools(Path(os.environ["GRACEFUL_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    debian.sort(key=lambda p: [int(n) for n in re.findall(r"\d+", p)], reverse=True)
    candidates.extend(Path(p) for p in debian)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if _has_server_tools(bindir):
            return bindir
    return None


def _has_server_tools(bindir: Path) -> Optional[Path]:
    if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
        return bindir
    return None


class _Runner:
    """Runs server commands as ourselves, or as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.as_other_user = os.geteuid() == 0
        if self.as_other_user:
            try:
                entry = pwd.getpwnam(OS_USER)
            except KeyError:
                unavailable(
                    f"the tests run as root and initdb refuses root, but there is no {OS_USER!r} "
                    f"user to run the server as; create one (`useradd --system {OS_USER}`, which "
                    "the postgresql package does) or run the tests as an ordinary user"
                )
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()

    def run(self, cmd: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        # subprocess switches user itself (setgid, setgroups([]), setuid in the child), which is
        # what `runuser -u postgres --` would do, without needing util-linux.
        extra: dict[str, Any] = {}
        if self.as_other_user:
            extra = {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **extra,
        )


def _short_tempdir() -> str:
    """A fresh private directory with a path short enough for a Unix socket inside it."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_SOCKET_DIR - 30:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="graceful-pg-", dir=base)


@contextlib.contextmanager
def running(bindir: Path, *, port: int = 5432) -> Iterator[PostgresServer]:
    """Create, start, yield, then stop and delete a cluster. Raises RuntimeError if it won't start.

    The port only names the socket file (`.s.PGSQL.<port>`): nothing listens on TCP.
    """
    runner = _Runner()
    root = Path(_short_tempdir())
    server = PostgresServer(
        host=str(root), port=port, datadir=root / "data", logfile=root / "server.log"
    )
    owner = os.getpid()
    started = False
    try:
        if runner.as_other_user:
            os.chown(root, runner.uid, runner.gid)
        result = runner.run(
            [
                str(bindir / "initdb"),
                f"--pgdata={server.datadir}",
                f"--username={server.user}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
            timeout=INITDB_TIMEOUT,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        # Settings go into the config file rather than `pg_ctl -o`, which passes through a shell.
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{root}'",
            "port": str(port),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with open(server.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# graceful test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        started = True  # from here on, always try to stop it
        result = runner.run(
            [
                str(bindir / "pg_ctl"),
                "start",
                f"--pgdata={server.datadir}",
                f"--log={server.logfile}",
                "--wait",
                f"--timeout={PG_CTL_TIMEOUT}",
            ],
            cwd=root,
            timeout=PG_CTL_TIMEOUT + 10,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"server log:\n{server.log_tail()}"
            )
        yield server
    finally:
        # A forked child that somehow got here must not stop the parent's server.
        if os.getpid() == owner:
            try:
                if started:
                    _stop(runner, bindir, server)
            finally:
                shutil.rmtree(root, ignore_errors=True)


def _stop(runner: _Runner, bindir: Path, server: PostgresServer) -> None:
    """Stop at once (the data is thrown away); if pg_ctl can't, kill the postmaster."""
    for mode in ("immediate", "fast"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            result = runner.run(
                [
                    str(bindir / "pg_ctl"),
                    "stop",
                    f"--pgdata={server.datadir}",
                    f"--mode={mode}",
                    "--wait",
                    "--timeout=30",
                ],
                cwd=server.datadir.parent,
                timeout=40,
            )
            if result.returncode == 0 or not (server.datadir / "postmaster.pid").exists():
                return
    # Last resort: SIGKILL the postmaster named in postmaster.pid (its backends exit when it does).
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((server.datadir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
