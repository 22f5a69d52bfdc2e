"""The conformance matrix's runner: one server, with or without graceful, one signal plan, a slow
request in flight; what happened to the request, the cleanups, the exit, the processes.

Each cell starts a real server (tests/server_programs/) on a free port of 127.0.0.1 through
graceful.testing, waits for its readiness line, starts a slow request, waits until the app has
it, then sends the plan's signals. The drain plan probes the readiness endpoint and sends a late
request while the server drains.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from graceful import testing

PROGRAMS = Path(__file__).parent / "server_programs"
SLOW = 1.5  # seconds the slow request takes
DRAIN = 1.0  # seconds of drain in the drain plan
STOP_TIMEOUT = 15.0  # a server still running this long after the first signal is SIGKILLed
#: Seconds a process still alive after the server's end has to end by itself before it counts as
#: left behind: one on its way out (its parent gone, its pipe closed) may need longer than
#: graceful.testing's default 0.25 s on a loaded machine (uvicorn --workers' INT twice left one
#: at load 48); one really left behind lives on.
GRACE = 2.0
SECOND_AFTER = 0.3  # a "twice" plan, alone, for a server that says nothing when it hears a signal
#: graceful's timeline line for the first signal (tests/server_programs/common.py logs it): with
#: graceful's recipe under @graceful.main, a "twice" plan's second signal waits for it.
GRACEFUL_HEARD = re.compile(r"^graceful: \+[0-9.]+s SIG[A-Z]+ received$")


@dataclass(frozen=True)
class Server:
    name: str
    argv: Callable[[str], list[str]]  # mode -> command
    ready: re.Pattern[str]
    env: tuple[tuple[str, str], ...] = ()
    cleanups: int = 1  # processes with a cleanup: 2 for gunicorn (master and worker)
    hup_reloads: bool = False  # SIGHUP reloads the workers: the plan then stops it with SIGTERM
    tasks: bool = False  # a task queue (celery): the in-flight work is a task, no readiness
    under_main: bool = False  # graceful's recipe runs it under @graceful.main: ends by the signal
    workers: int = 1  # the ready line comes once per worker: wait for all of them
    #: Its own shutdown varies from run to run (celery's SIGHUP reload hangs in some runs, alone
    #: too; uvicorn's --workers sometimes never take the request on a busy machine): its rows of
    #: docs/servers.md are not compared, and work never taken is tried twice more.
    varies: bool = False
    #: The line it prints once it has heard a first SIGTERM or SIGINT (the server's own, alone
    #: and, where the server keeps its signals, with graceful): a "twice" plan sends its second
    #: signal then, never before the first was heard (two signals before a handler ran are
    #: one). None: it says nothing; alone, the second comes SECOND_AFTER s after the first.
    heard: Optional[re.Pattern[str]] = None
    #: The line that shows the work in flight is the server's (the plan's signals go then);
    #: None: the app's own "request started".
    taken: Optional[re.Pattern[str]] = None
    #: Plans whose ending graceful's recipe cannot change (the lifespan recipe and uvicorn's
    #: supervisor, which ignores SIGQUIT): the row says what happens, no promise is checked.
    not_promised: tuple[str, ...] = ()


def _script(name: str) -> Callable[[str], list[str]]:
    return lambda mode: [sys.executable, "-u", str(PROGRAMS / name)]


def _gunicorn(app: str) -> Callable[[str], list[str]]:
    return lambda mode: [sys.executable, "-u", "-m", "gunicorn", "-c", "gunicorn.conf.py", app]


SERVERS = {
    s.name: s
    for s in (
        Server(
            "uvicorn",
            _script("serve_uvicorn.py"),
            re.compile(r"Uvicorn running on"),
            heard=re.compile(r"Shutting down"),
            under_main=True,
        ),
        Server(
            "uvicorn --workers 2",
            lambda mode: [
                sys.executable,
                "-u",
                "-m",
                "uvicorn",
                "asgi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                "2",
                "--timeout-graceful-shutdown",
                "5",
            ],
            re.compile(r"Application startup complete"),
            env=(("LIFESPAN_RECIPE", "1"),),
            heard=re.compile(r"Received SIG(TERM|INT), exiting"),
            cleanups=2,
            hup_reloads=True,
            workers=2,
            varies=True,  # on a busy machine its workers sometimes never take the request
            not_promised=("QUIT",),
        ),
        Server(
            "hypercorn",
            _script("serve_hypercorn.py"),
            re.compile(r"Running on http"),
            under_main=True,
        ),
        Server(
            "aiohttp", _script("serve_aiohttp.py"), re.compile(r"Running on http"), under_main=True
        ),
        Server(
            "aiohttp AppRunner",
            _script("serve_aiohttp_runner.py"),
            re.compile(r"^Running on http"),
            under_main=True,
        ),
        Server(
            "gunicorn gthread",
            _gunicorn("wsgi_app:app"),
            re.compile(r"^worker ready$"),
            heard=re.compile(r"Handling signal: (term|int)"),
            env=(("WORKER_CLASS", "gthread"),),
            cleanups=2,
            hup_reloads=True,
        ),
        Server(
            "gunicorn sync",
            _gunicorn("wsgi_app:app"),
            re.compile(r"^worker ready$"),
            heard=re.compile(r"Handling signal: (term|int)"),
            env=(("WORKER_CLASS", "sync"),),
            cleanups=2,
            hup_reloads=True,
        ),
        Server(
            "gunicorn UvicornWorker",
            _gunicorn("asgi_app:app"),
            re.compile(r"^worker ready$"),
            heard=re.compile(r"Handling signal: (term|int)"),
            env=(("WORKER_CLASS", "uvicorn.workers.UvicornWorker"),),
            cleanups=2,
            hup_reloads=True,
        ),
        Server(
            "celery prefork",
            lambda mode: [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                "1",
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ],
            re.compile(r"ready\.$"),
            # Its main process has the task's start from the pool process (DEBUG, tasks.py): a
            # SIGQUIT while it still hands the task over hangs celery's cold shutdown, alone too
            # (its handler joins the pool inside the signal handler, in the middle of the event
            # loop that pool needs: docs/servers.md).
            taken=re.compile(r"Task accepted: tasks\.slow\["),
            heard=re.compile(r"^worker: Warm shutdown \(MainProcess\)"),
            cleanups=2,
            hup_reloads=True,
            tasks=True,
            varies=True,
        ),
    )
}

#: The signal plans: the signals sent (the second SECOND_AFTER s after the first), or a drain.
PLANS = {
    "TERM": ("TERM",),
    "INT": ("INT",),
    "HUP": ("HUP",),
    "QUIT": ("QUIT",),
    "TERM twice": ("TERM", "TERM"),
    "INT twice": ("INT", "INT"),
    "TERM, drain": ("TERM",),
}
MODES = ("alone", "graceful")


@dataclass
class Cell:
    server: str
    mode: str
    plan: str
    request: str = ""  # the in-flight request: "200", or how it failed
    cleanups: int = 0
    ended: str = ""  # "SIGTERM", "exit 0", "killed"
    orphans: int = 0
    elapsed: float = 0.0
    ready: str = ""  # drain plan: the readiness probe during the drain
    late: str = ""  # drain plan: a new request during the drain
    result: Optional[testing.ShutdownResult] = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.server, self.mode, self.plan)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, timeout: float = 15.0) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return str(conn.getresponse().status)
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return "cut"
    except OSError as exc:
        return type(exc).__name__
    finally:
        conn.close()


def describe_end(result: testing.ShutdownResult) -> str:
    if result.timed_out:
        return "hangs"
    if result.signal is not None:
        return _signal_name(result.signal)
    return f"exit {result.exit_code}"


def _signal_name(number: int) -> str:
    import signal

    return signal.Signals(number).name


def run_cell(server_name: str, mode: str, plan: str, broker: str = "") -> Cell:
    """One cell; once more on a fresh port if the slow request never reached the app (a free
    port picked here can be taken by another cell's process before the server binds it)."""
    try:
        return _run_cell(server_name, mode, plan, broker)
    except NotTaken:
        pass
    try:
        return _run_cell(server_name, mode, plan, broker)
    except NotTaken as exc:
        if not SERVERS[server_name].varies:
            raise exc.cause from None
        cell = Cell(server_name, mode, plan, request="not taken", ended="hangs")
        cell.result = exc.cause.result
        return cell


class NotTaken(Exception):
    """The work in flight never reached the app (``cause``: the harness's NotReady)."""

    def __init__(self, cause: testing.NotReady) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _run_cell(server_name: str, mode: str, plan: str, broker: str = "") -> Cell:
    server = SERVERS[server_name]
    cell = Cell(server_name, mode, plan)
    port = free_port()
    drain = plan.endswith("drain")
    queue = f"q{port}"  # cells share one Redis: each its own queue
    env = cell_env(server, mode, port, drain=DRAIN if drain else 0, broker=broker)
    argv = command(server, mode, port)
    argv += ["-Q", queue] if server.tasks else []
    with testing.start(
        command=argv, ready=server.ready, env=env, cwd=PROGRAMS, ready_timeout=30
    ) as program:
        for _ in range(server.workers - 1):
            program.wait_for(server.ready, timeout=30)
        outcome: list[str] = []
        if server.tasks:
            work = lambda: outcome.append(run_task(broker, queue))  # noqa: E731
        else:
            work = lambda: outcome.append(get(port, "/slow"))  # noqa: E731
        client = threading.Thread(target=work)
        client.start()
        try:
            try:
                program.wait_for(server.taken or "request started", timeout=15)
            except testing.NotReady as exc:
                raise NotTaken(exc) from None
            signals = PLANS[plan]
            reloads = ""
            if drain:
                program.send(signals[0])
                if not server.tasks:
                    cell.ready = _probe_while_draining(port, program)
                    cell.late = get(port, "/", timeout=5) if program.running else "refused"
                result = program.wait(STOP_TIMEOUT, grace=GRACE)
            elif plan == "HUP" and server.hup_reloads:
                program.send("HUP")
                client.join(STOP_TIMEOUT)
                if not server.tasks:
                    program.wait_for(server.ready, timeout=15)  # gunicorn's new worker
                reloads = "reloads; "
                result = program.stop("TERM", timeout=STOP_TIMEOUT, grace=GRACE)
            else:
                result = _stop(program, server, mode, signals)
        finally:
            client.join(STOP_TIMEOUT + 5)
    cell.result = result
    cell.request = outcome[0] if outcome else "no answer"
    cell.cleanups = sum(line.startswith("cleanup ran") for line in result.stdout.splitlines())
    cell.orphans = len(result.orphans)
    cell.ended = reloads + describe_end(result) + (f", {cell.orphans} left" if cell.orphans else "")
    cell.elapsed = result.elapsed
    return cell


def cell_env(
    server: Server, mode: str, port: int, *, drain: float = 0, broker: str = ""
) -> dict[str, str]:
    """The environment of a server program (tests/server_programs/common.py reads it)."""
    return dict(
        os.environ,
        MODE=mode,
        PORT=str(port),
        DRAIN=str(drain),
        SLOW=str(SLOW),
        BROKER=broker,
        PYTHONPATH=str(PROGRAMS),
        PYTHONDONTWRITEBYTECODE="1",
        **dict(server.env),
    )


def command(server: Server, mode: str, port: int) -> list[str]:
    return [a.replace("{port}", str(port)) for a in server.argv(mode)]


def _stop(
    program: testing.Program, server: Server, mode: str, signals: tuple[str, ...]
) -> testing.ShutdownResult:
    """The plan's signals; a second one once the program has shown it heard the first."""
    heard = GRACEFUL_HEARD if server.under_main and mode == "graceful" else server.heard
    if heard is None or len(signals) == 1:
        return program.stop(*signals, interval=SECOND_AFTER, timeout=STOP_TIMEOUT, grace=GRACE)
    return program.stop(*signals, after=heard, timeout=STOP_TIMEOUT, grace=GRACE)


def run_task(broker: str, queue: str) -> str:
    """Send ``tasks.slow``; "done" once its result is stored, or "lost" if it never is."""
    import json

    import redis
    from celery import Celery

    app = Celery(broker=broker)
    try:
        task_id = app.send_task("tasks.slow", queue=queue).id
    finally:
        app.close()
    store = redis.Redis.from_url(broker)
    try:
        deadline = time.monotonic() + STOP_TIMEOUT + 5
        while time.monotonic() < deadline:
            stored = store.get(f"celery-task-meta-{task_id}")
            if stored is not None:
                meta = json.loads(stored)
                return "done" if meta.get("result") == "done" else str(meta.get("status")).lower()
            time.sleep(0.05)  # the result store's own view, polled
        return "lost"
    finally:
        store.close()


def _probe_while_draining(port: int, program: testing.Program) -> str:
    """The readiness probe, until it fails (503, refused) or the server ends: its first failure."""
    deadline = time.monotonic() + DRAIN * 3 + 5
    while program.running and time.monotonic() < deadline:
        answer = get(port, "/ready", timeout=5)
        if answer != "200":
            return answer
        time.sleep(0.02)  # a probe, like a kubelet's: the server's own view, polled
    return "200 throughout"


def run_cells(keys: list[tuple[str, str, str]], parallel: int, broker: str = "") -> list[Cell]:
    from concurrent.futures import ThreadPoolExecutor

    if any(SERVERS[server].tasks for server, _, _ in keys):
        # celery's lazy module is not safe to import from several threads at once: import here.
        from celery import Celery  # noqa: F401
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda key: run_cell(*key, broker=broker), keys))


def summary(cells: list[Cell]) -> str:
    lines = []
    for c in cells:
        drain = f" ready={c.ready} late={c.late}" if c.plan.endswith("drain") else ""
        lines.append(
            f"{c.server:24} {c.mode:8} {c.plan:12} request={c.request:9} cleanups={c.cleanups} "
            f"ended={c.ended:8} orphans={c.orphans} {c.elapsed:5.2f}s{drain}"
        )
    return "\n".join(lines)


def report(cell: Cell) -> Any:
    return cell.result.report() if cell.result is not None else ""


class Redis:
    """A real redis-server on a free port of 127.0.0.1, in a temporary directory, for celery."""

    def __init__(self, directory: Path) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not found: scripts/test installs it (apt)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.program = testing.start(
            command=[
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            ready=re.compile(r"Ready to accept connections"),
        )

    def stop(self) -> None:
        self.program.stop("TERM")


# --- docs/servers.md: the table, generated from the cells -----------------------------------

DOCS = Path(__file__).parent.parent / "docs" / "servers.md"
BEGIN = "<!-- BEGIN the conformance matrix: generated by tests/test_servers_matrix.py -->"
END = "<!-- END the conformance matrix -->"


def _work(cell: Cell) -> str:
    return {"200": "served", "done": "done"}.get(cell.request, cell.request)


def _cleanups(cell: Cell) -> str:
    if "hangs" in cell.ended and SERVERS[cell.server].varies:
        return "—"  # killed while hung: how far its shutdown got varies from run to run
    if cell.ended.startswith("reloads"):
        return str(cell.cleanups)  # the reloaded workers' too
    return f"{cell.cleanups}/{SERVERS[cell.server].cleanups}"


def _drain(cell: Cell) -> str:
    if SERVERS[cell.server].tasks:
        return "—"
    if cell.ready == "503" and cell.late == "200":
        return "ready 503, late served"
    if cell.ready in ("refused", "cut") and cell.late in ("refused", "cut"):
        return "probe refused or reset"  # which of the two: timing
    return f"ready {cell.ready}, late {cell.late}"


def row(alone: Cell, ours: Cell) -> str:
    """The table's row for one server and plan."""
    if alone.plan.endswith("drain"):
        cells = [alone.server, alone.plan, _drain(alone), "", "", _drain(ours), "", ""]
    else:
        cells = [alone.server, alone.plan]
        for c in (alone, ours):
            cells += [_work(c), _cleanups(c), c.ended]
    return "| " + " | ".join(cells) + " |"


def row_of(cells: list[Cell], server: str, plan: str) -> Optional[str]:
    by_key = {c.key: c for c in cells}
    alone = by_key.get((server, "alone", plan))
    ours = by_key.get((server, "graceful", plan))
    return None if alone is None or ours is None else row(alone, ours)


def rows(document: str) -> dict[tuple[str, str], str]:
    """The rows docs/servers.md holds, by server and plan."""
    found = {}
    for line in document.partition(BEGIN)[2].partition(END)[0].splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) > 2 and parts[0] in SERVERS:
            found[(parts[0], parts[1])] = line
    return found


def graceful_part(line: str) -> list[str]:
    """A row's server, plan, and the columns of graceful's recipe."""
    parts = [p.strip() for p in line.strip().strip("|").split("|")]
    return parts[:2] + parts[5:]


def table(cells: list[Cell]) -> str:
    """One row per server and plan: the in-flight work, the cleanups that ran (of those
    registered), how the process ended; alone, then with graceful's recipe."""
    lines = [
        "| server | signal | alone: in flight | cleanups | ends | graceful: in flight | "
        "cleanups | ends |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server in SERVERS:
        for plan in PLANS:
            line = row_of(cells, server, plan)
            if line is not None:
                lines.append(line)
    return "\n".join(lines) + "\n"


def with_table(document: str, cells: list[Cell]) -> str:
    """``document`` with the text between BEGIN and END replaced by the table of ``cells``."""
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table(cells)}{END}{tail}"
