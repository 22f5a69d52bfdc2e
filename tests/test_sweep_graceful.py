"""graceful's own promises, swept: a signal at every line of small programs that use it.

tests/test_every_step.py puts a signal at every step of graceful's own code; these put one at
every line of the user's code around it (through ``graceful.testing.sweep``, issue 23), with each
driver: every run must die by the signal, run each cleanup at most once, and leave nothing
running. A second signal at every line of the cleanups must not break that either.
"""

from __future__ import annotations

import pytest

from graceful.testing import Shutdown, ShutdownResult, SweepRun

#: The sweeps' time budget: every point runs, however busy the machine (each run is bounded).
EVERY_POINT = 900.0


def ends_well(result: ShutdownResult, run: SweepRun) -> None:
    """Died by a signal it got, each cleanup at most once (each prints one distinct line),
    nothing left running."""
    sent = {s.signal for s in result.signals_sent}
    assert result.signal in sent, f"{result.how_it_ended()}\n\n{result.report()}"
    lines = result.stdout.splitlines()
    assert len(lines) == len(set(lines)), f"a cleanup ran twice: {lines}\n\n{result.report()}"
    if result.events("signal"):  # graceful had taken the signal: it ends without a traceback
        assert "Traceback" not in result.stderr, result.report()
    result.no_orphans()


GUARD = """\
import graceful

def close(what):
    print("closed", what, flush=True)

graceful.register(close, "global")
with graceful.guard() as outer:
    outer.register(close, "outer")
    with graceful.guard() as inner:
        inner.register(close, "inner")
        x = 1
    y = 2
z = 3
"""

MAIN = """\
import graceful

@graceful.main
def main():
    @graceful.register
    def first():
        a = 1
        print("first", flush=True)

    @graceful.register
    def second():
        b = 2
        print("second", flush=True)

    c = 3
    return 0

main()
"""

ASYNC = """\
import asyncio
import graceful

@graceful.main
async def main():
    @graceful.register
    async def close():
        await asyncio.sleep(0)
        print("closed", flush=True)

    for i in range(2):
        await asyncio.sleep(0)
    return 0

main()
"""

SPAWN = """\
import sys
import graceful

@graceful.main
def main():
    backend = graceful.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    graceful.register(backend.terminate)
    x = 1
    return 0

main()
"""


@pytest.mark.parametrize(
    ("code", "signals"),
    [
        pytest.param(
            GUARD,
            ("TERM", "INT", "HUP"),
            id="nested-guards",
        ),
        pytest.param(MAIN, ("TERM", "INT"), id="main"),
        pytest.param(ASYNC, ("TERM",), id="async-main"),
        pytest.param(SPAWN, ("TERM",), id="spawn"),
    ],
)
def test_a_signal_at_every_line_ends_well(
    shutdown: Shutdown, code: str, signals: tuple[str, ...]
) -> None:
    result = shutdown.sweep(code=code, signal=signals, check=ends_well, budget=EVERY_POINT)
    assert len(result.runs) == len(signals) * len(result.points) >= 5
    assert not result.not_covered


@pytest.mark.parametrize("code", [pytest.param(MAIN, id="main"), pytest.param(ASYNC, id="async")])
def test_a_second_signal_at_every_line_of_the_cleanups(shutdown: Shutdown, code: str) -> None:
    result = shutdown.sweep(
        code=code, where="main", then=("INT", "every"), check=ends_well, budget=EVERY_POINT
    )
    seconds = [r for r in result.runs if r.then_at is not None]
    assert seconds, result.summary()
