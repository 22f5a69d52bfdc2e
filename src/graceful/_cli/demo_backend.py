"""The backend of ``graceful demo``: it reads rows from its stdin, one per line, until EOF.

It stands for any backend a program feeds over a pipe. SIGTERM does not kill it: it says so and
finishes what it was sent, then exits when the pipe is closed. So the demo shows both halves of
stopping a backend, the signal (``break``) and the closed pipe (``exit``).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Optional

received: list[int] = []


def say(text: str) -> None:
    """One line in one write(), so it never mixes with the worker's lines."""
    os.write(1, f"  [backend] {text}\n".encode())


def on_signal(signum: int, frame: Optional[FrameType]) -> None:
    if not received:
        say(f"got {signal.Signals(signum).name}: finishing the rows already sent, then exit at EOF")
    received.append(signum)


def main() -> int:
    signal.signal(signal.SIGTERM, on_signal)
    say("ready: reading rows from stdin")
    rows = 0
    for _ in sys.stdin:
        rows += 1
    again = ""
    if len(received) > 1:
        # A SIGKILLed parent's threads die one by one; the kernel sends the parent-death signal
        # each time the backend is handed on to the next thread, then to the new parent.
        again = f" (SIGTERM arrived {len(received)} times)"
    say(f"stdin closed (EOF) after {rows} rows: exiting{again}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
