"""graceful: end a Python program well.

On HUP, INT, QUIT and TERM, run the cleanups you registered, exactly once and newest first, then
die by the same signal so the parent sees the truth; never run them in a forked child.
"""

from ._core import at_exit as _at_exit  # noqa: F401  (protects the interpreter's exit path)
from ._core.errors import RegistrationClosed, Signalled
from ._core.guard import Guard, guard
from ._core.machine import draining, shutdown_event
from ._core.main import main
from ._core.options import DEFAULT_TIMEOUT
from ._core.registry import register, register_break, unregister, unregister_break
from ._integrations.frameworks import ashutdown, shutdown
from ._integrations.systemd import notify_ready
from ._process.backends import track
from ._process.fork import ForkHooks, at_fork
from ._process.parent_death import die_with_parent
from ._process.spawn import spawn
from ._version import __version__


def end_drain() -> bool:
    """End the drain now (nothing is in flight any more): the shutdown proper begins.

    Returns False, doing nothing, when no drain is in progress. Safe from any thread.
    """
    from ._core.machine import machine

    return machine.request_end_drain()


__all__ = [
    "DEFAULT_TIMEOUT",
    "ForkHooks",
    "Guard",
    "RegistrationClosed",
    "Signalled",
    "__version__",
    "ashutdown",
    "at_fork",
    "die_with_parent",
    "draining",
    "end_drain",
    "guard",
    "main",
    "notify_ready",
    "register",
    "register_break",
    "shutdown",
    "shutdown_event",
    "spawn",
    "track",
    "unregister",
    "unregister_break",
]
