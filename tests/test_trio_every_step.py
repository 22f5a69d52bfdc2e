"""Issue 25, item 4: the every-step injection sweep (tests/test_every_step.py) for the trio driver.

A tracer in the child counts the line events inside graceful's own code and sends SIGTERM to its
own process at the k-th one, for every k until a run passes the end of graceful's code with no
signal sent. Each k runs in a forked grandchild of one prepared child. The scenarios cover the
guard's entry and exit (flat, nested, ``@main(backend="trio")``), the cancellation of the block
by a first SIGTERM (the swept one is then a second signal: forced, or absorbed), and the awaited
cleanups. Every run must end by SIGTERM, print no traceback, run each cleanup at most once (each
exactly once where a second signal is absorbed), and never reach the code after the block.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from helpers import assert_skipped_only_at_the_end, run_every_step

pytest.importorskip("trio")

SCENARIOS = r'''
import trio

KIND = sys.argv[1]


def scenario(k, log):
    """Runs in a forked child; sends SIGTERM at the k-th line event in graceful's code."""
    tracer, count = signal_at(k, log)

    async def awaited(name):
        await trio.sleep(0)
        log(name)

    graceful.register(log, "global")
    graceful.register(awaited, "async global")

    async def flat():
        async with graceful.guard() as g:
            g.register(log, "block")
            g.register(awaited, "async block")
            sys.settrace(tracer)
            await trio.sleep(0)
        log("after", count[0])

    async def nested():
        async with graceful.guard() as outer:
            outer.register(log, "outer")
            async with graceful.guard() as inner:
                inner.register(awaited, "inner")
                sys.settrace(tracer)
                await trio.sleep(0)
            log("after inner", count[0])
        log("after", count[0])

    async def enter():
        sys.settrace(tracer)
        async with graceful.guard() as g:
            g.register(log, "block")
            log("body", count[0])
            await trio.sleep(0)
        log("after", count[0])

    def cancelled(second):
        async def block():
            async with graceful.guard(on_second_signal=second) as g:
                g.register(log, "block")
                g.register(awaited, "async block")
                sys.settrace(tracer)
                os.kill(os.getpid(), signal.SIGTERM)  # the first; the swept one is a second
                await trio.sleep_forever()
            log("after", count[0])
        return block

    if KIND in ("main", "main_cancel"):
        @graceful.main(backend="trio", on_second_signal="ignore")
        async def main():
            log("body", count[0])
            sys.settrace(tracer)
            if KIND == "main_cancel":
                os.kill(os.getpid(), signal.SIGTERM)
                await trio.sleep_forever()
            await trio.sleep(0)
            return 0
        main()
    else:
        programs = {
            "flat": flat,
            "nested": nested,
            "enter": enter,
            "cancel_force": cancelled("force"),
            "cancel_ignore": cancelled("ignore"),
        }
        trio.run(programs[KIND])
    sys.settrace(None)
    log("returned", count[0])


# trio's first run loads what it needs: once here, not in every forked run (graceful's driver
# is not loaded here: its loading, on the first guard, is one of the steps swept).
trio.run(trio.sleep, 0)
# The first k past the end of graceful's code sends no signal (some runs end by a first SIGTERM
# of their own).
sweep(scenario, lambda code, lines: not any(line[0] == "at" for line in lines))
'''

CLEANUPS = ("global", "async global", "block", "async block", "outer", "inner")


@pytest.mark.parametrize(
    "kind", ["flat", "nested", "enter", "cancel_force", "cancel_ignore", "main", "main_cancel"]
)
def test_a_signal_at_every_step_of_the_trio_driver_ends_by_it(tmp_path: Path, kind: str) -> None:
    results, _ = run_every_step(tmp_path, SCENARIOS, [kind], timeout=300)
    *signalled, (last_k, last_code, last_lines) = results
    assert len(signalled) >= 20, "the tracer saw too few steps: is it tracing graceful?"
    # The last run got no swept signal: it ran the whole scenario as it would without one.
    if kind in ("cancel_force", "cancel_ignore", "main_cancel"):
        assert last_code == -signal.SIGTERM, (last_k, last_lines)
    else:
        assert last_code == 0, (last_k, last_lines)
    if kind == "main":
        assert ["global"] in last_lines, (last_k, last_lines)
    elif kind not in ("cancel_force", "cancel_ignore", "main_cancel"):
        assert ["returned", last_k - 1] in last_lines, (last_k, last_lines)
    for k, code, lines in signalled:
        what = [line[0] for line in lines]
        assert code == -signal.SIGTERM, (k, lines)
        assert "escaped" not in what, (k, lines)
        assert "after" not in what, (k, lines)
        assert "returned" not in what, (k, lines)
        for name in CLEANUPS:
            assert what.count(name) <= 1, (k, lines)
        if kind in ("cancel_ignore", "main_cancel"):
            # The second signal is absorbed: the shutdown the first began runs every cleanup.
            expected = ["async block", "block"] if kind == "cancel_ignore" else []
            done = [name for name in what if name in CLEANUPS]
            assert done == [*expected, "async global", "global"], (k, lines)
        if kind == "nested" and "after inner" in what:
            # The signal came at the very end of the inner guard's exit: the enclosing block
            # ends by it (the outer guard ends the process) before its cleanups are skipped.
            assert what.index("after inner") < what.index("outer"), (k, lines)
    print(f"{kind}: {len(signalled)} steps, Python {sys.version_info[:2]}")
    if kind == "cancel_force":
        return  # a second signal ends the process at once, wherever it comes: cleanups skipped
    # Only once the outermost guard has given the signal back (its last act) may a signal skip
    # the registered cleanups: the previous disposition then ends the process.
    assert_skipped_only_at_the_end(
        signalled,
        at_start=kind == "enter",
        last_acts=("restore", "_close", "close_unless_signalled", "set_mask", "block"),
    )
