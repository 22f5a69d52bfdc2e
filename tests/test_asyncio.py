"""Issue 11: asyncio programs get every guarantee the synchronous guard gives. Real processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from graceful.testing import Shutdown
from helpers import HANDLED, NO_CORE, Child, run, timed, timed_second, with_options

SERVER = """
import asyncio, os, graceful

def say(text):  # one write per line
    os.write(1, (text + "\\n").encode())

async def close_pool():  # an async cleanup: awaited in the program's loop after main unwound
    await asyncio.sleep(0.05)
    say("async cleanup: pool closed")

graceful.register(say, "plain cleanup (older)")
graceful.register(close_pool)

async def handle(reader, writer):
    try:
        await reader.read()
    except asyncio.CancelledError:
        say("handler cancelled")
        raise
    finally:
        writer.close()

@graceful.main(**OPTIONS)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    await asyncio.sleep(0.1)  # the server has accepted them: five handlers wait
    async with server:
        try:
            say("ready")
            await server.serve_forever()
        finally:
            say("main finally")
    return 0

main()
"""


def server(**options: object) -> str:
    return with_options(SERVER, **options)


@pytest.mark.parametrize("sig", HANDLED, ids=lambda s: s.name)
def test_an_asyncio_server_with_open_connections_unwinds_then_dies_by_the_signal(
    sig: signal.Signals,
) -> None:
    child = run(NO_CORE + server(), sig)
    assert child.proc.returncode == -sig, child.stderr
    # The main task unwound, and so did the connections' handlers (after it, or on 3.12+, where
    # Server.wait_closed() waits for them, before its finally: graceful cancels them too); then
    # the cleanups ran, newest first, the async one awaited in the program's loop.
    assert child.lines[0] == "ready"
    assert sorted(child.lines[1:7]) == ["handler cancelled"] * 5 + ["main finally"]
    assert child.lines[7:] == ["async cleanup: pool closed", "plain cleanup (older)"]


def test_on_signal_exit_and_exit_code_as_the_synchronous_guard() -> None:
    child = run(server(on_signal="exit", exit_code=3), signal.SIGTERM)
    assert child.proc.returncode == 3, child.stderr
    assert child.lines[-1] == "plain cleanup (older)"


def test_a_normal_return_runs_the_async_cleanups_in_the_loop() -> None:
    code = """
    import asyncio, graceful
    async def close():
        await asyncio.sleep(0)
        print("closed in loop", asyncio.get_running_loop() is LOOP[0], flush=True)
    LOOP = []
    graceful.register(close)
    @graceful.main
    async def main():
        LOOP.append(asyncio.get_running_loop())
        return 7
    main()
    """
    child = run(code)
    assert child.proc.returncode == 7
    assert child.lines == ["closed in loop True"]


def test_a_hung_async_cleanup_is_cut_off_by_the_deadline() -> None:
    code = """
    import asyncio, graceful
    @graceful.register
    async def hang():
        print("hanging", flush=True)
        await asyncio.Event().wait()
    @graceful.main(timeout=1)
    async def main():
        print("ready", flush=True)
        await asyncio.sleep(60)
    main()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "hanging"]
    assert 1.0 <= elapsed < 3.0, elapsed
    assert "cleanup __main__.hang was still running" in child.stderr


def test_a_second_ctrl_c_forces_the_end_during_an_async_cleanup() -> None:
    code = """
    import asyncio, graceful
    graceful.register(print, "skipped")
    @graceful.register
    async def slow():
        print("slow cleanup", flush=True)
        await asyncio.sleep(60)
    @graceful.main
    async def main():
        print("ready", flush=True)
        await asyncio.sleep(60)
    main()
    """
    child, elapsed = timed_second(code, signal.SIGINT, during="slow cleanup")
    assert child.proc.returncode == -signal.SIGINT
    assert elapsed < 1.0
    assert "skipped" not in child.lines


def test_a_task_that_swallows_cancellation_does_not_hang_the_exit() -> None:
    code = """
    import asyncio, graceful
    graceful.register(print, "cleanup", flush=True)
    async def stubborn():
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass  # swallowed: it never ends
    @graceful.main(timeout=4)
    async def main():
        asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
        print("ready", flush=True)
        await asyncio.sleep(60)
    main()
    """
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "cleanup"]
    assert elapsed < 3.0  # a quarter of the deadline for the other tasks, not the deadline
    assert "still running after they were cancelled (stubborn)" in child.stderr


def test_async_with_guard_inside_asyncio_run_puts_back_the_loops_own_handlers() -> None:
    code = """
    import asyncio, os, signal, graceful
    def theirs():
        print("their SIGHUP handler", flush=True)
    async def main():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, theirs)
        before = signal.getsignal(signal.SIGTERM)
        try:
            async with graceful.guard(on_signal="raise") as g:
                g.register(print, "block cleanup", flush=True)
                print("ready", flush=True)
                await asyncio.sleep(60)
        except graceful.Signalled as exc:
            print("caught", exc.signal.name, flush=True)
        print("SIGTERM back", signal.getsignal(signal.SIGTERM) == before, flush=True)
        print("SIGHUP theirs again", loop._signal_handlers[signal.SIGHUP]._callback is theirs)
        os.kill(os.getpid(), signal.SIGHUP)  # reaches their handler, as before the guard
        await asyncio.sleep(0.2)
    asyncio.run(main())
    """
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == [
        "ready",
        "block cleanup",
        "caught SIGTERM",
        "SIGTERM back True",
        "SIGHUP theirs again True",
        "their SIGHUP handler",
    ]


def test_async_with_guard_in_a_loop_it_does_not_own_ends_the_process_by_the_signal() -> None:
    code = """
    import asyncio, graceful
    async def close():
        print("async cleanup", flush=True)
    graceful.register(close)
    async def serve():
        async with graceful.guard():
            try:
                print("ready", flush=True)
                await asyncio.sleep(60)
            finally:
                print("block finally", flush=True)
    asyncio.run(serve())
    """
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "block finally", "async cleanup"]


def test_an_async_cleanup_in_a_synchronous_program_runs_in_a_fresh_loop(
    shutdown: Shutdown,
) -> None:
    # graceful.testing's own fixture: start, wait for "ready", SIGTERM, read the timeline.
    result = shutdown.run(
        code="""
        import asyncio, time, graceful
        async def close():
            await asyncio.sleep(0)
        graceful.register(close)
        with graceful.guard():
            print("ready", flush=True)
            time.sleep(60)
        """,
        ready="ready",
    )
    result.died_by(signal.SIGTERM).cleanups_ran(["close"], ok=True).no_orphans()
    assert "never awaited" not in result.stderr


def test_a_plain_guard_inside_a_coroutine_is_refused_saying_what_to_use() -> None:
    code = """
    import asyncio, graceful
    async def main():
        try:
            with graceful.guard():
                pass
        except RuntimeError as exc:
            print(exc)
    asyncio.run(main())
    """
    child = run(code)
    assert "use `async with graceful.guard():`" in child.lines[0]


def test_uvloop_as_the_loop_factory() -> None:
    code = """
    import asyncio, graceful, uvloop
    async def close():
        print("closed", type(asyncio.get_running_loop()).__module__.split(".")[0], flush=True)
    graceful.register(close)
    @graceful.main(loop_factory=uvloop.new_event_loop)
    async def main():
        print("ready", flush=True)
        await asyncio.sleep(60)
    main()
    """
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "closed uvloop"]


def test_import_graceful_still_imports_no_asyncio() -> None:
    child = run("import sys, graceful; print('asyncio' in sys.modules)")
    assert child.lines == ["False"]


def test_loop_factory_is_checked_at_decoration() -> None:
    import graceful

    with pytest.raises(TypeError, match="loop_factory must be a callable"):
        graceful.main(loop_factory=3)  # type: ignore[call-overload]

    def plain() -> int:
        return 0

    with pytest.raises(TypeError, match="applies to an `async def` main only"):
        graceful.main(loop_factory=dict)(plain)  # type: ignore[arg-type]


def test_a_tracked_asyncio_subprocess_is_broken_exited_and_reaped() -> None:
    code = """
    import asyncio, graceful
    @graceful.main
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c",
            "trap 'echo got TERM; exit 3' TERM; echo armed; while :; do sleep 0.05; done",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"armed\\n"  # its trap is set
        @graceful.register  # registered before track(): runs after the backend is stopped
        async def report():
            out = await proc.stdout.read()
            print("backend said", out.decode().strip(), "and ended", await proc.wait())
        graceful.track(proc)
        print("ready", proc.pid, flush=True)
        await asyncio.sleep(60)
    main()
    """
    with Child(code) as child:
        line = child.wait_for_prefix("ready ")
        pid = int(line.split()[1])
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines[1:] == ["backend said got TERM and ended 3"]
    assert not Path(f"/proc/{pid}").exists()


# --- Issue 21, defect 8: the awaiting ending does what the blocking one does ---------------------

RAISE_MODE = """
import asyncio, os, time, graceful
async def main():
    try:
        GUARD as g:
            g.register(print, "block cleanup", flush=True)
            print("ready", flush=True)
            SLEEP
    except graceful.Signalled as exc:
        print("caught", exc.signal.name, flush=True)
asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_on_signal_raise_writes_the_same_timeline_in_both_drivers(
    tmp_path: Path, kind: str
) -> None:
    timeline = tmp_path / "timeline.jsonl"
    if kind == "async":
        code = RAISE_MODE.replace("GUARD", "async with graceful.guard(on_signal='raise')")
        code = code.replace("SLEEP", "await asyncio.sleep(60)")
    else:  # the blocking driver
        code = RAISE_MODE.replace("asyncio.run(main())", "main()").replace("async def", "def")
        code = code.replace("GUARD", "with graceful.guard(on_signal='raise')")
        code = code.replace("SLEEP", "time.sleep(60)")
    child = run(code, signal.SIGTERM, env={"GRACEFUL_TIMELINE": str(timeline)})
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == ["ready", "block cleanup", "caught SIGTERM"], child.stderr
    events = [json.loads(line)["event"] for line in timeline.read_text().splitlines()]
    assert events == ["signal", "cleanup", "end"], events


# --- Issue 28, item 8: Ctrl-C inside asyncio.run ends by SIGINT, not exit 130 --------------------


def test_async_with_guard_inside_asyncio_run_dies_by_sigint() -> None:
    code = """
    import asyncio, graceful
    graceful.register(print, "cleanup", flush=True)
    async def serve():
        async with graceful.guard():
            print("ready", flush=True)
            await asyncio.sleep(60)
    asyncio.run(serve())
    print("after asyncio.run", flush=True)
    """
    child = run(code, signal.SIGINT)
    assert child.proc.returncode == -signal.SIGINT, child.stderr
    assert child.lines == ["ready", "cleanup"], child.stderr


# --- Issue 28, items 5 and 6: async @main's cleanups run in the program's loop, whatever happens --

ENDING_ASYNC_MAIN = """
import asyncio, graceful
LOOP = []

def where():
    return "program loop" if asyncio.get_running_loop() is LOOP[0] else "another loop"

async def first():
    print("first cleanup in", where(), flush=True)

async def slow():
    print("slow cleanup started", flush=True)
    await asyncio.sleep(0.5)
    print("slow cleanup done in", where(), flush=True)

graceful.register(first)
graceful.register(slow)

@graceful.main
async def main():
    LOOP.append(asyncio.get_running_loop())
    print("ready", flush=True)
    BODY
main()
"""


@pytest.mark.parametrize(
    ("body", "ready"),
    [
        ("return 0", "slow cleanup started"),  # the signal comes as main() has returned
        (  # the main task swallows its cancellation, then returns
            "try:\n        await asyncio.sleep(60)\n    except asyncio.CancelledError:\n"
            "        print('swallowed', flush=True)",
            "ready",
        ),
    ],
    ids=["signal after main returned", "main swallows the cancellation"],
)
def test_async_cleanups_run_in_the_programs_loop(body: str, ready: str) -> None:
    child = run(ENDING_ASYNC_MAIN.replace("BODY", body), signal.SIGTERM, ready=ready)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert "slow cleanup done in program loop" in child.lines, (child.lines, child.stderr)
    assert child.lines[-1] == "first cleanup in program loop", (child.lines, child.stderr)


# --- Issue 22, item 2: a server's own shutdown is respected -------------------------------------

SERVER_OWN_SHUTDOWN = """
import asyncio, graceful
graceful.register(print, "cleanup", flush=True)

async def request():
    try:
        await asyncio.sleep(0.6)  # a slow request in flight
        print("request done", flush=True)
    except asyncio.CancelledError:
        print("request cut", flush=True)
        raise

@graceful.main
async def main():
    task = asyncio.ensure_future(request())
    await asyncio.sleep(0)
    print("ready", flush=True)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:  # the server's own shutdown: let the request finish
        await asyncio.wait_for(task, 3)
        print("server stopped", flush=True)
        raise
main()
"""


def test_the_main_task_ends_on_its_own_before_the_others_are_cancelled() -> None:
    child = run(SERVER_OWN_SHUTDOWN, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "request done", "server stopped", "cleanup"], child.stderr
