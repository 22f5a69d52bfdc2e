"""What every server program of the conformance matrix shares: its settings (from the
environment the test sets), one-write lines, and readiness that fails while graceful drains."""

import os

GRACEFUL = os.environ["MODE"] == "graceful"  # "alone": the server's own way, no graceful
PORT = int(os.environ["PORT"])
DRAIN = float(os.environ.get("DRAIN", "0"))
SLOW = float(os.environ.get("SLOW", "1.5"))  # seconds a slow request or task takes
TIMEOUT = 10.0  # graceful's deadline; the servers' own shutdown timeouts are 5 s


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())  # one write a line: lines of processes never mix


def log_graceful() -> None:
    """graceful's timeline on stdout, one line a record ("graceful: +0.000s SIGTERM received"):
    the test sends a plan's second signal once graceful has heard the first (graceful's logger,
    as any program would configure it)."""
    import logging

    class Say(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(self.format(record))

    logger = logging.getLogger("graceful")
    logger.setLevel(logging.INFO)
    logger.addHandler(Say())
    logger.propagate = False  # a server's own root handler would print it twice


def draining() -> bool:
    if not GRACEFUL:
        return False
    import graceful

    return graceful.draining.is_set()


def cleanup() -> None:
    say(f"cleanup ran {os.getpid()}")
