"""Issue 25: trio programs, and anyio programs on either backend, get what asyncio programs get.

Real processes, real signals; every wait is a readiness line or a bounded ``finish()``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from helpers import HANDLED, NO_CORE, Child, run, timed, timed_second, with_options

pytest.importorskip("trio")
pytest.importorskip("anyio")


PRELUDE = """
import os, signal, sys, graceful

def say(text):  # one write per line
    os.write(1, (text + "\\n").encode())
"""

#: A trio program: children in a nursery, an async cleanup, a block cleanup, a plain one.
TRIO = (
    PRELUDE
    + """
import trio

async def close_pool():  # awaited in the program's own run, after the block unwound
    await trio.sleep(0.01)
    say("async cleanup: pool closed")

graceful.register(say, "plain cleanup (older)")
graceful.register(close_pool)

async def handler(n, task_status=trio.TASK_STATUS_IGNORED):
    try:
        task_status.started()
        await trio.sleep_forever()
    finally:
        say("handler finally")

async def main():
    async with graceful.guard(**OPTIONS) as g:
        g.register(say, "block cleanup")
        try:
            async with trio.open_nursery() as nursery:
                for n in range(3):
                    await nursery.start(handler, n)
                say("ready")
                await trio.sleep_forever()
        finally:
            say("main finally")
    say("after the block")

trio.run(main)
"""
)


def trio_program(**options: object) -> str:
    return with_options(TRIO, **options)


@pytest.mark.parametrize("sig", HANDLED, ids=lambda s: s.name)
def test_a_trio_block_unwinds_through_its_cancel_scope_then_dies_by_the_signal(
    sig: signal.Signals,
) -> None:
    child = run(NO_CORE + trio_program(), sig)
    assert child.proc.returncode == -sig, child.stderr
    assert "Traceback" not in child.stderr, child.stderr
    assert child.lines == [
        "ready",
        "handler finally",
        "handler finally",
        "handler finally",
        "main finally",
        "block cleanup",
        "async cleanup: pool closed",
        "plain cleanup (older)",
    ]


def test_on_signal_raise_gives_signalled_to_the_code_around_the_block() -> None:
    code = (
        PRELUDE
        + """
import trio
before = {}
async def main():
    before["TERM"] = signal.getsignal(signal.SIGTERM)
    before["INT"] = signal.getsignal(signal.SIGINT)
    try:
        async with graceful.guard(on_signal="raise") as g:
            g.register(say, "block cleanup")
            say("ready")
            await trio.sleep_forever()
    except graceful.Signalled as exc:
        say(f"caught {exc.signal.name}")
    say(f"TERM back {signal.getsignal(signal.SIGTERM) == before['TERM']}")
    say(f"trio's SIGINT handler back {signal.getsignal(signal.SIGINT) is before['INT']}")
    await trio.sleep(0)
    say("goes on")
trio.run(main)
"""
    )
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == [
        "ready",
        "block cleanup",
        "caught SIGTERM",
        "TERM back True",
        "trio's SIGINT handler back True",
        "goes on",
    ]


def test_nested_guards_the_enclosing_block_gets_the_signal() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    async with graceful.guard() as outer:
        outer.register(say, "outer cleanup")
        try:
            async with graceful.guard() as inner:
                inner.register(say, "inner cleanup")
                say("ready")
                await trio.sleep_forever()
            say("after inner")
        finally:
            say("outer finally")
    say("after outer")
trio.run(main)
"""
    )
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "inner cleanup", "outer finally", "outer cleanup"]


MAIN = (
    PRELUDE
    + """
import trio
async def close():
    await trio.sleep(0)
    say(f"async cleanup in the run {trio.lowlevel.current_trio_token() is TOKEN[0]}")
TOKEN = []
graceful.register(close)

@graceful.main(backend="trio", **OPTIONS)
async def main():
    TOKEN.append(trio.lowlevel.current_trio_token())
    try:
        if RETURN is not None:
            return RETURN
        say("ready")
        await trio.sleep_forever()
    finally:
        say("main finally")
main()
"""
)


def main_program(ret: object = None, **options: object) -> str:
    return f"OPTIONS = {options!r}\nRETURN = {ret!r}\n" + MAIN


def test_main_on_trio_dies_by_the_signal_after_its_async_cleanups() -> None:
    child = run(main_program(), signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "main finally", "async cleanup in the run True"]


def test_main_on_trio_exits_with_what_main_returns_after_its_cleanups() -> None:
    child = run(main_program(7))
    assert child.proc.returncode == 7, child.stderr
    assert child.lines == ["main finally", "async cleanup in the run True"]


def test_main_on_trio_on_signal_exit_uses_the_exit_code() -> None:
    child = run(main_program(on_signal="exit", exit_code=3), signal.SIGTERM)
    assert child.proc.returncode == 3, child.stderr
    assert child.lines[-1] == "async cleanup in the run True"


def test_a_hung_async_cleanup_is_cut_off_by_the_deadline() -> None:
    code = (
        PRELUDE
        + """
import trio
@graceful.register
async def hang():
    say("hanging")
    await trio.sleep_forever()
@graceful.main(backend="trio", timeout=1)
async def main():
    say("ready")
    await trio.sleep_forever()
main()
"""
    )
    child, elapsed = timed(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM
    assert child.lines == ["ready", "hanging"]
    assert 1.0 <= elapsed < 3.0, elapsed
    assert "cleanup __main__.hang was still running" in child.stderr


def test_a_second_ctrl_c_forces_the_end_during_an_async_cleanup() -> None:
    code = (
        PRELUDE
        + """
import trio
graceful.register(say, "skipped")
@graceful.register
async def slow():
    say("slow cleanup")
    await trio.sleep(60)
@graceful.main(backend="trio")
async def main():
    say("ready")
    await trio.sleep_forever()
main()
"""
    )
    child, elapsed = timed_second(code, signal.SIGINT, during="slow cleanup")
    assert child.proc.returncode == -signal.SIGINT
    assert elapsed < 1.0
    assert "skipped" not in child.lines


def test_the_cleanups_are_shielded_from_a_cancellation_around_the_block() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    with trio.CancelScope() as around:
        async def cleanup():
            around.cancel()  # the code around the block gives up: the cleanup goes on
            await trio.sleep(0.05)
            say("cleanup finished")
        graceful.register(cleanup)
        async with graceful.guard():
            say("ready")
            await trio.sleep_forever()
trio.run(main)
"""
    )
    child = run(code, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert child.lines == ["ready", "cleanup finished"]


ANYIO = (
    PRELUDE
    + """
import anyio

async def close():
    await anyio.sleep(0)
    say("async cleanup")
graceful.register(close)

async def worker(task_status=anyio.TASK_STATUS_IGNORED):
    try:
        task_status.started()
        await anyio.sleep_forever()
    finally:
        say("worker finally")

async def main():
    async with graceful.guard():
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(worker)
                await tg.start(worker)
                say("ready")
                await anyio.sleep_forever()
        finally:
            say("main finally")
    say("after the block")

anyio.run(main, backend=BACKEND)
"""
)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_an_anyio_program_on_either_backend_unwinds_then_dies_by_the_signal(backend: str) -> None:
    child = run(f"BACKEND = {backend!r}\n" + ANYIO, signal.SIGTERM)
    assert child.proc.returncode == -signal.SIGTERM, child.stderr
    assert "Traceback" not in child.stderr, child.stderr
    assert child.lines == [
        "ready",
        "worker finally",
        "worker finally",
        "main finally",
        "async cleanup",
    ]


def test_trios_own_ctrl_c_still_works_where_graceful_does_not_take_sigint() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    trios = signal.getsignal(signal.SIGINT)
    say(f"trio's handler {trios is not signal.default_int_handler}")
    async with graceful.guard(signal.SIGTERM):
        say(f"still trio's in the block {signal.getsignal(signal.SIGINT) is trios}")
        try:
            say("ready")
            await trio.sleep_forever()
        finally:
            say("finally")
trio.run(main)
"""
    )
    child = run(code, signal.SIGINT)
    assert child.lines == [
        "trio's handler True",
        "still trio's in the block True",
        "ready",
        "finally",
    ]
    # trio's KeyboardInterrupt, uncaught: Python ends the process by SIGINT after its traceback.
    assert child.proc.returncode == -signal.SIGINT, child.stderr
    assert child.stderr.rstrip().endswith("KeyboardInterrupt"), child.stderr


def test_trios_ki_protection_holds_after_the_guard_gave_sigint_back() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    trios = signal.getsignal(signal.SIGINT)
    async with graceful.guard(on_signal="raise"):
        say(f"graceful's in the block {signal.getsignal(signal.SIGINT) is not trios}")
    say(f"trio's back {signal.getsignal(signal.SIGINT) is trios}")
    try:
        say("ready")
        await trio.sleep_forever()
    except KeyboardInterrupt:
        say("KeyboardInterrupt at the checkpoint")
trio.run(main)
"""
    )
    child = run(code, signal.SIGINT)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == [
        "graceful's in the block True",
        "trio's back True",
        "ready",
        "KeyboardInterrupt at the checkpoint",
    ]


def test_a_signal_receiver_opened_inside_the_block_is_the_users() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    async with graceful.guard() as g:
        g.register(say, "block cleanup")
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            say("ready")
            async for signum in signals:
                say(f"theirs: {signal.Signals(signum).name}")
                break
        say("ready again")
        await trio.sleep_forever()
trio.run(main)
"""
    )
    with Child(code) as child:
        child.wait_for("ready")
        child.send(signal.SIGHUP)  # the receiver's, not a shutdown
        child.wait_for("ready again")
        child.send(signal.SIGHUP)  # graceful's again once the receiver closed
        assert child.finish() == -signal.SIGHUP, child.stderr
    assert child.lines == ["ready", "theirs: SIGHUP", "ready again", "block cleanup"]


def test_a_handler_still_installed_at_the_exit_stays_installed() -> None:
    code = (
        PRELUDE
        + """
import trio
def theirs(signum, frame):
    say("their SIGHUP handler")
async def main():
    async with graceful.guard(on_signal="raise"):
        signal.signal(signal.SIGHUP, theirs)
    say(f"theirs stays {signal.getsignal(signal.SIGHUP) is theirs}")
    os.kill(os.getpid(), signal.SIGHUP)
    await trio.sleep(0)
trio.run(main)
"""
    )
    child = run(code)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == ["theirs stays True", "their SIGHUP handler"]


def test_a_program_that_does_not_use_trio_imports_none_of_it() -> None:
    code = """
    import asyncio, sys, graceful
    with graceful.guard():
        pass
    async def block():
        async with graceful.guard():
            await asyncio.sleep(0)
    asyncio.run(block())
    graceful.main(backend="asyncio")  # the option alone loads nothing
    print(sorted(m for m in sys.modules if "trio" in m or m.startswith("anyio")))
    """
    child = run(code)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines == ["[]"]


def test_refusals_say_what_to_do() -> None:
    code = """
    import graceful, trio
    async def main():
        pass
    def sync():
        pass
    for make in (
        lambda: graceful.main(backend="curio"),
        lambda: graceful.main(backend="trio", loop_factory=lambda: None),
        lambda: graceful.main(backend="trio")(sync),
    ):
        try:
            make()
        except (TypeError, ValueError) as exc:
            print(type(exc).__name__, exc)
    async def plain_with():
        with graceful.guard():
            pass
    try:
        trio.run(plain_with)
    except RuntimeError as exc:
        print("RuntimeError", exc)
    """
    child = run(code)
    assert child.proc.returncode == 0, child.stderr
    assert child.lines[0].startswith("ValueError @graceful.main: backend must be 'asyncio' or")
    assert child.lines[1].startswith("TypeError @graceful.main: loop_factory chooses an asyncio")
    assert child.lines[2].startswith("TypeError @graceful.main: backend applies to an `async def`")
    assert child.lines[3].startswith("RuntimeError graceful.guard(): an event loop is running")
    assert "use `async with graceful.guard():`" in child.lines[3]
    assert len(child.lines) == 4


TRAPPER = "trap 'echo got TERM; exit 3' TERM; echo armed; while :; do sleep 0.05; done"


def test_a_tracked_trio_process_is_broken_exited_and_reaped() -> None:
    code = f"""
import subprocess, trio, graceful
@graceful.main(backend="trio")
async def main():
    proc = await trio.lowlevel.open_process(["sh", "-c", {TRAPPER!r}], stdout=subprocess.PIPE)
    out = b""
    while not out.endswith(b"armed\\n"):  # its trap is set
        out += await proc.stdout.receive_some()
    @graceful.register  # registered before track(): runs after the backend is stopped
    async def report():
        with trio.fail_after(5):  # bounded: a normal end has no deadline
            said = await proc.stdout.receive_some()
            print("backend said", said.decode().strip(), "and ended", await proc.wait())
    assert graceful.track(proc) is proc
    print("ready", proc.pid, flush=True)
    await trio.sleep_forever()
main()
"""
    with Child(code) as child:
        pid = int(child.wait_for_prefix("ready ").split()[1])
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines[1:] == ["backend said got TERM and ended 3"]
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_tracked_anyio_process_is_broken_exited_and_reaped(backend: str) -> None:
    code = f"""
import subprocess, anyio, graceful
async def main():
    async with graceful.guard():
        proc = await anyio.open_process(["sh", "-c", {TRAPPER!r}], stdout=subprocess.PIPE)
        out = b""
        while not out.endswith(b"armed\\n"):
            out += await proc.stdout.receive()
        @graceful.register
        async def report():
            with anyio.fail_after(5):  # bounded: a normal end has no deadline
                said = await proc.stdout.receive()
                print("backend said", said.decode().strip(), "and ended", await proc.wait())
        assert graceful.track(proc) is proc
        print("ready", proc.pid, flush=True)
        await anyio.sleep_forever()
anyio.run(main, backend={backend!r})
"""
    with Child(code) as child:
        pid = int(child.wait_for_prefix("ready ").split()[1])
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
    assert child.lines[1:] == ["backend said got TERM and ended 3"]
    assert not Path(f"/proc/{pid}").exists()


def test_a_drain_ends_then_the_block_is_cancelled() -> None:
    code = (
        PRELUDE
        + """
import trio
async def main():
    async with graceful.guard(drain=0.3) as g:
        g.register(say, "block cleanup")
        try:
            say("ready")
            while not graceful.draining.is_set():
                await trio.sleep(0.01)
            say("draining")
            await trio.sleep_forever()  # cancelled when the drain ends
        finally:
            say("finally")
trio.run(main)
"""
    )
    with Child(code) as child:
        child.wait_for("ready")
        start = time.monotonic()
        child.send(signal.SIGTERM)
        assert child.finish() == -signal.SIGTERM, child.stderr
        elapsed = time.monotonic() - start
    assert child.lines == ["ready", "draining", "finally", "block cleanup"]
    assert 0.3 <= elapsed < 3.0, elapsed
