"""Issue 22: graceful inside the servers people run (graceful.integrations).

The core subset of the conformance matrix (tests/test_servers_matrix.py runs all of it): each
server with graceful's recipe, a slow request in flight, then SIGTERM with a drain (a real
readiness probe on 127.0.0.1, a late request during the drain) and SIGTERM alone. Plus the
helpers' refusals and celery's strong references.
"""

from __future__ import annotations

import gc
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

import servers_support
from graceful import testing
from helpers import run

HTTP_SERVERS = [
    "uvicorn",
    "hypercorn",
    "aiohttp",
    "aiohttp AppRunner",
    "gunicorn gthread",
    "gunicorn UvicornWorker",
]


SERVED = ("200", "done")


def check_graceful_cell(
    cell: servers_support.Cell, alone: Optional[servers_support.Cell] = None
) -> None:
    """What graceful promises under a server: the request in flight is served (where the server
    alone serves it: gunicorn's SIGINT and SIGQUIT are quick stops by design), each process's
    cleanups run exactly once, the process ends as it should (by the signal under @main; as the
    server alone ends it otherwise), nothing is left behind, in time."""
    server = servers_support.SERVERS[cell.server]
    result = cell.result
    assert result is not None
    report = result.report()
    if alone is None or alone.request in SERVED:
        assert cell.request in SERVED, report
    assert cell.cleanups == server.cleanups, report
    pids = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("cleanup")]
    assert len(pids) == len(set(pids)), report  # once per process
    if server.under_main:
        result.died_by(servers_support.PLANS[cell.plan][0])
    elif alone is not None and alone.result is not None and not alone.result.timed_out:
        result.exited_with(alone.result.exit_code if alone.result.exit_code is not None else 0)
    elif alone is not None:  # the server alone hung in this run: it exits, with its own status
        assert result.exit_code is not None, report
        assert not result.timed_out, report
    else:
        result.exited_with(0)
    result.no_orphans()
    bound = servers_support.SLOW + servers_support.DRAIN + 5.0  # the servers' own 5 s timeouts
    result.ended_within(bound)


@pytest.mark.parametrize("server", HTTP_SERVERS)
def test_drain_under_a_server_that_owns_the_signals(server: str) -> None:
    cell = servers_support.run_cell(server, "graceful", "TERM, drain")
    report = cell.result.report() if cell.result else ""
    # The readiness probe failed during the drain while the server still served a late request.
    assert cell.ready == "503", report
    assert cell.late == "200", report
    check_graceful_cell(cell)
    # The drain lasted its time: the shutdown began once it was over.
    assert cell.result is not None
    if not server.startswith("gunicorn"):
        drain = cell.result.events("drain_end")
        assert drain, report
        assert drain[0]["t"] >= servers_support.DRAIN * 0.9, report


@pytest.mark.parametrize("server", HTTP_SERVERS)
def test_sigterm_with_a_request_in_flight(server: str) -> None:
    check_graceful_cell(servers_support.run_cell(server, "graceful", "TERM"))


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "aiohttp", "aiohttp AppRunner"])
@pytest.mark.parametrize("plan", ["TERM twice", "INT twice"])
def test_a_repeat_under_a_server_forces_the_end(server: str, plan: str) -> None:
    """graceful's second-signal rule under a server that owns the signals: the second signal,
    sent once graceful has logged the first, ends the process at once by the signal, skipping
    the cleanups (the server's stopper is graceful's handler: the repeat is never taken for the
    replay of a signal someone else's handler had)."""
    cell = servers_support.run_cell(server, "graceful", plan)
    result = cell.result
    assert result is not None
    report = result.report()
    assert [s.delivered for s in result.signals_sent] == [True, True], report
    ends = result.events("end")
    assert [e["how"] for e in ends] == ["forced"], report
    assert cell.cleanups == 0, report
    result.died_by(servers_support.PLANS[plan][0])
    result.no_orphans()
    result.ended_within(servers_support.SLOW)  # before the request in flight was done


def test_uvicorn_workers_stop_on_sigquit_under_graceful_run() -> None:
    """uvicorn's --workers supervisor ignores SIGQUIT (it hangs and its workers serve on, with
    the lifespan recipe or without): under `graceful run --map QUIT:TERM` it gets SIGTERM
    instead, the request in flight is served, each worker runs its cleanup, nothing is left."""
    server = servers_support.SERVERS["uvicorn --workers 2"]
    port = servers_support.free_port()
    graceful_run = [sys.executable, "-m", "graceful", "run", "--map", "QUIT:TERM", "--"]
    argv = graceful_run + servers_support.command(server, "graceful", port)
    env = servers_support.cell_env(server, "graceful", port)
    outcome: list[str] = []
    with testing.start(
        command=argv, ready=server.ready, env=env, cwd=servers_support.PROGRAMS, ready_timeout=30
    ) as program:
        program.wait_for(server.ready, timeout=30)  # the second worker
        client = threading.Thread(target=lambda: outcome.append(servers_support.get(port, "/slow")))
        client.start()
        try:
            program.wait_for("request started", timeout=15)
            result = program.stop("QUIT", timeout=servers_support.STOP_TIMEOUT)
        finally:
            client.join(servers_support.STOP_TIMEOUT + 5)
    report = result.report()
    assert outcome == ["200"], report
    pids = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("cleanup")]
    assert len(pids) == 2 == len(set(pids)), report  # each worker's, once
    result.exited_with(0)  # as the supervisor exits on SIGTERM
    result.no_orphans()
    result.ended_within(servers_support.SLOW + 5.0)


HYPERCORN_WORKERS = servers_support.Server(
    "hypercorn --workers 2",
    lambda mode: [
        sys.executable,
        "-u",
        "-m",
        "hypercorn",
        "asgi_app:app",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "2",
        "--graceful-timeout",
        "5",
        "--error-logfile",
        "-",
    ],
    re.compile(r"Running on http"),
    env=(("LIFESPAN_RECIPE", "1"),),
    cleanups=2,
    workers=2,
)


@pytest.mark.parametrize("sig", ["TERM", "INT", "QUIT"])
def test_hypercorn_workers_under_graceful_run(sig: str) -> None:
    """hypercorn's --workers master, under `graceful run --map QUIT:TERM`, each worker with the
    lifespan recipe and graceful.integrations.hypercorn.install(): the request in flight is
    served, each worker runs its cleanup once, the master exits 0, nothing is left behind.
    Without install(), the master's SIGTERMs (sent once the first worker has exited) kill the
    worker still serving: the request is cut, and its cleanup never runs."""
    server = HYPERCORN_WORKERS
    port = servers_support.free_port()
    graceful_run = [sys.executable, "-m", "graceful", "run", "--map", "QUIT:TERM", "--"]
    argv = graceful_run + servers_support.command(server, "graceful", port)
    env = servers_support.cell_env(server, "graceful", port)
    outcome: list[str] = []
    with testing.start(
        command=argv, ready=server.ready, env=env, cwd=servers_support.PROGRAMS, ready_timeout=30
    ) as program:
        program.wait_for(server.ready, timeout=30)  # the second worker
        client = threading.Thread(target=lambda: outcome.append(servers_support.get(port, "/slow")))
        client.start()
        try:
            program.wait_for("request started", timeout=15)
            result = program.stop(sig, timeout=servers_support.STOP_TIMEOUT)
        finally:
            client.join(servers_support.STOP_TIMEOUT + 5)
    report = result.report()
    assert outcome == ["200"], report
    pids = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("cleanup")]
    assert len(pids) == 2 == len(set(pids)), report  # each worker's, once
    result.exited_with(0)
    result.no_orphans()
    result.ended_within(servers_support.SLOW + 5.0)


def test_hypercorn_install_absorbs_sigterm_until_the_deadline() -> None:
    """install() does nothing where SIGTERM is handled; where it is at the default, SIGTERM (sent
    twice, as hypercorn's master does) no longer kills the worker at once: graceful's deadline,
    counted from the first, ends it by SIGTERM if it has not finished by then."""
    child = run(
        """
        import os, signal, time
        import graceful.integrations.hypercorn as hypercorn
        signal.signal(signal.SIGTERM, lambda *_: None)
        print(hypercorn.install())
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(hypercorn.install(timeout=0.5))
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        print("alive", flush=True)
        time.sleep(10)
        print("not reached")
        """
    )
    assert child.lines == ["False", "True", "alive"], child
    assert child.proc.returncode == -signal.SIGTERM, child
    assert "shutdown deadline of 0.5 s passed" in child.stderr, child


def test_plain_aiohttp_run_app_under_main_says_what_to_use() -> None:
    """web.run_app itself under @graceful.main takes SIGTERM through its event loop, where
    graceful never hears it, and resets it to the default at its end: the program exits 0 (as
    docs/servers.md says), and graceful's guard, finding its handler removed, says why and what
    to use instead."""
    port = servers_support.free_port()
    code = f"""
    import os, graceful
    from aiohttp import web

    @graceful.main(timeout=5)
    def main():
        graceful.register(lambda: os.write(1, b"cleanup ran\\n"))
        web.run_app(web.Application(), host="127.0.0.1", port={port}, print=print)

    main()
    """
    with testing.start(code=code, ready=re.compile("Running on")) as program:
        result = program.stop("TERM", timeout=servers_support.STOP_TIMEOUT)
    report = result.report()
    result.exited_with(0)
    assert "cleanup ran" in result.stdout.splitlines(), report
    assert "graceful: SIGTERM" in result.stderr, report
    assert "reset to the default inside the guard" in result.stderr, report
    assert "graceful.integrations (aiohttp.run_app" in result.stderr, report


# --- the helpers' refusals ----------------------------------------------------------------------


def test_uvicorn_helpers_refuse_what_is_not_a_server() -> None:
    from graceful.integrations import uvicorn as graceful_uvicorn

    with pytest.raises(TypeError, match=r"pass a uvicorn\.Server"):
        graceful_uvicorn.run(object())


def test_aiohttp_run_app_refuses_handle_signals() -> None:
    from aiohttp import web

    from graceful.integrations import aiohttp as graceful_aiohttp

    with pytest.raises(TypeError, match="handle_signals is graceful's to set"):
        graceful_aiohttp.run_app(web.Application(), handle_signals=True)


def test_gunicorn_hooks_check_their_options() -> None:
    from graceful.integrations import gunicorn as graceful_gunicorn

    with pytest.raises(ValueError, match="drain"):
        graceful_gunicorn.hooks(drain=-1)
    with pytest.raises((TypeError, ValueError), match="timeout"):
        graceful_gunicorn.hooks(timeout="soon")  # type: ignore[arg-type]
    assert sorted(graceful_gunicorn.hooks()) == sorted(
        ["when_ready", "post_fork", "post_worker_init", "worker_exit", "on_exit"]
    )


def test_stopping_refuses_a_non_callable_and_another_thread() -> None:
    from graceful.integrations import stopping

    with pytest.raises(TypeError):
        stopping("stop")  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with stopping(lambda sig: None):
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0])


def test_stopping_puts_back_the_handlers_it_replaced() -> None:
    from graceful.integrations import stopping

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with stopping(lambda sig: None) as stopper:
        assert signal.getsignal(signal.SIGTERM) is stopper
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_celery_install_keeps_strong_references_and_connects_once() -> None:
    from celery import signals

    import graceful.integrations.celery

    def receivers(sig: object) -> int:
        """Live receivers: celery keeps a weak reference (called to get the function) unless
        connected with weak=False."""
        import weakref

        live = [r[1]() if isinstance(r[1], weakref.ReferenceType) else r[1] for r in sig.receivers]  # type: ignore[attr-defined]
        return sum(1 for r in live if r is not None)

    before = receivers(signals.worker_process_shutdown)
    graceful.integrations.celery.install()
    graceful.integrations.celery.install()  # twice: connected once
    gc.collect()
    assert receivers(signals.worker_process_shutdown) == before + 1
    assert receivers(signals.worker_shutdown) >= 1


def test_integrations_import_no_server() -> None:
    # The helpers import their server when called, never at import.
    child = run(
        """
        import sys
        import graceful.integrations, graceful.integrations.uvicorn
        import graceful.integrations.aiohttp, graceful.integrations.gunicorn
        import graceful.integrations.celery, graceful.integrations.hypercorn
        servers = {"uvicorn", "aiohttp", "gunicorn", "celery", "hypercorn"}
        print(sorted(servers & set(sys.modules)))
        print("ready")
        """
    )
    assert child.proc.returncode == 0, child
    assert child.lines[0] == "[]"


LIFESPAN_GUARD = """
import contextlib, graceful
from fastapi import FastAPI

@contextlib.asynccontextmanager
async def lifespan(app):
    async with graceful.guard():   # uvicorn owns SIGTERM here: refused, with what to do instead
        yield

app = FastAPI(lifespan=lifespan)
"""


def test_a_guard_around_a_lifespan_is_refused_not_left_serving(tmp_path: Path) -> None:
    from graceful import testing

    (tmp_path / "app.py").write_text(LIFESPAN_GUARD)
    result = testing.run(
        command=[sys.executable, "-m", "uvicorn", "app:app", "--port", "0"],
        cwd=tmp_path,
        signal=None,
        timeout=30,
    )
    assert "SIGINT is handled by 'Server.handle_exit'" in result.stderr, result.report()
    assert "await graceful.ashutdown()" in result.stderr
    assert "Uvicorn running" not in result.stderr  # it never served
    assert result.exit_code not in (None, 0), result.report()
    result.no_orphans()


def readme_kubernetes_recipe() -> str:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Running under Kubernetes", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_kubernetes_recipe_works_around_a_real_uvicorn(tmp_path: Path) -> None:
    import re

    from graceful import testing

    port = servers_support.free_port()
    code = readme_kubernetes_recipe()
    # As printed, but on a free port of 127.0.0.1 and with a 1 s drain.
    for printed, here in (
        ('host="0.0.0.0", port=8000', f'host="127.0.0.1", port={port}'),
        ("drain=10", "drain=1"),
    ):
        assert code.count(printed) == 1, printed
        code = code.replace(printed, here)
    (tmp_path / "service.py").write_text(code)
    with testing.start(
        script=tmp_path / "service.py", ready=re.compile("Uvicorn running on"), ready_timeout=30
    ) as program:
        assert servers_support.get(port, "/ready") == "200"
        program.send("TERM")
        assert servers_support.get(port, "/ready") == "503"  # draining: the probe fails...
        assert servers_support.get(port, "/docs") == "200"  # ...and requests are still served
        result = program.wait(20)
    result.died_by("TERM").no_orphans().ended_within(1 + 5)
    assert [e["event"] for e in result.timeline][:3] == ["signal", "drain_start", "drain_end"]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers_support.Redis]:
    server = servers_support.Redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("plan", ["TERM", "QUIT"], ids=["warm", "cold"])
def test_celery_worker_and_pool_process_cleanups(redis: servers_support.Redis, plan: str) -> None:
    cell = servers_support.run_cell("celery prefork", "graceful", plan, broker=redis.url)
    if cell.ended == "hangs" and plan == "TERM":
        # celery's own warm shutdown hangs in some runs, without graceful too (docs/servers.md):
        # one more run, so a busy machine does not fail the test.
        cell = servers_support.run_cell("celery prefork", "graceful", plan, broker=redis.url)
    assert cell.result is not None
    report = cell.result.report()
    # The main process and the pool process each ran its cleanup once, warm or cold.
    assert cell.cleanups == 2, report
    pids = [line.split()[-1] for line in cell.result.stdout.splitlines() if "cleanup ran" in line]
    assert len(set(pids)) == 2, report
    if plan == "TERM":
        assert cell.request == "done", report  # a warm shutdown finishes the task in flight
    cell.result.exited_with(0).no_orphans()
