"""graceful: end a Python program well.

On HUP, INT, QUIT and TERM, run the cleanups you registered, exactly once and newest first, then
die by the same signal so the parent sees the truth; never run them in a forked child.
"""

from ._core.errors import Signalled
from ._core.guard import Guard, guard
from ._core.main import main
from ._core.registry import register, register_break, unregister, unregister_break
from ._core.shutdown import DEFAULT_TIMEOUT, shutdown_event
from ._process.backends import track
from ._process.fork import ForkHooks, at_fork
from ._process.parent_death import die_with_parent
from ._process.spawn import spawn
from ._version import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "ForkHooks",
    "Guard",
    "Signalled",
    "__version__",
    "at_fork",
    "die_with_parent",
    "guard",
    "main",
    "register",
    "register_break",
    "shutdown_event",
    "spawn",
    "track",
    "unregister",
    "unregister_break",
]
