"""Issue 22: the path a signal takes under a server that owns the signals (a ``Stopper`` in front
of the server's own stop) loses no signal at any step.

As tests/test_every_step.py does for a guard: a tracer in a forked child counts the line events in
graceful's code and sends SIGTERM to its own process at the k-th one, for every k, from the
moment the stopper is installed (``graceful.integrations.stopping``) through the block and the
restore (@main's own ending after that is tests/test_every_step.py's). Every run must end by
SIGTERM, print no traceback, stop the "server" at most once and run the cleanup exactly once.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from helpers import run_every_step

SCENARIO = r"""
import threading
from graceful.integrations import stopping

DRAIN = float(sys.argv[1])


def scenario(k, log):
    tracer, count = signal_at(k, log)

    @graceful.main(drain=DRAIN)
    def main():
        graceful.register(log, "global")
        stopped = threading.Event()
        sys.settrace(tracer)
        with stopping(lambda sig: (log("stop", sig), stopped.set())):
            log("serving")
            stopped.wait(0.2 + DRAIN)  # the server: serves until it is told to stop
        sys.settrace(None)  # what follows is @main's own ending: tests/test_every_step.py
        log("server returned")
        return 0

    main()


sweep(scenario)
"""


@pytest.mark.parametrize(
    "drain",
    [
        0.0,  # the stopper stops the server from the signal handler itself
        0.05,  # from the machine's drain_end listener (the watcher thread)
    ],
)
def test_a_signal_at_every_step_of_a_stopper_ends_by_it(tmp_path: Path, drain: float) -> None:
    results, _ = run_every_step(tmp_path, SCENARIO, [str(drain)], timeout=240)
    *signalled, (last_k, last_code, last_lines) = results
    assert last_code == 0, (last_k, last_lines)  # no signal: served, returned, cleaned up
    assert ["global"] in last_lines, last_lines
    assert len(signalled) >= 20, "the tracer saw too few steps: is it tracing graceful?"
    for k, code, lines in signalled:
        what = [line[0] for line in lines]
        assert code == -signal.SIGTERM, (k, lines)
        assert "escaped" not in what, (k, lines)
        assert what.count("stop") <= 1, (k, lines)
        assert what.count("global") == 1, (k, lines)  # the signal came inside the guard
