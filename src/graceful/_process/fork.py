"""``graceful.at_fork``: a cancellable, logging ``os.register_at_fork``.

``os.register_at_fork`` cannot unregister and prints a raising hook as "Exception ignored";
``at_fork`` hooks can be cancelled, and one that raises is logged to the "graceful" logger with
its traceback while the others still run. graceful's single fork hook (``_core/forking.py``) calls
them: the ``before`` hooks before the signal watcher steps aside, the ``after_in_parent`` ones
after it resumes, and the ``after_in_child`` ones once graceful's own state has been reset in the
child (its cleanups dropped, its guards inert), so a hook may register the child's cleanups or
enter a guard.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType

from .._core import forking as _fork_path  # noqa: F401  (the fork path that calls these hooks)
from .._core import registry as _registry
from .._core import timeline as _timeline
from .._core.checks import check_callable

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Callable, Optional

if TYPE_CHECKING:
    Hook = Callable[[], object]


class ForkHooks:
    """What ``at_fork`` returns: ``cancel()`` it, or leave its ``with`` block, to unregister."""

    __slots__ = ("_active", "after_in_child", "after_in_parent", "before")

    def __init__(
        self,
        before: Optional[Hook],
        after_in_parent: Optional[Hook],
        after_in_child: Optional[Hook],
    ) -> None:
        self.before = before
        self.after_in_parent = after_in_parent
        self.after_in_child = after_in_child
        self._active = True

    @property
    def active(self) -> bool:
        """True until cancelled."""
        return self._active

    def cancel(self) -> None:
        """Unregister the hooks; later forks won't call them. Idempotent."""
        global _hooks
        with _lock:
            self._active = False
            _hooks = tuple(h for h in _hooks if h is not self)

    def __enter__(self) -> ForkHooks:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.cancel()

    def __repr__(self) -> str:
        parts = [
            f"{name}={_registry.describe(func)}"
            for name, func in (
                ("before", self.before),
                ("after_in_parent", self.after_in_parent),
                ("after_in_child", self.after_in_child),
            )
            if func is not None
        ]
        state = "active" if self._active else "cancelled"
        return f"<graceful.ForkHooks {' '.join(parts)} {state}>"


#: Registered handles, oldest first. Replaced, never mutated, so a fork can read it without a lock.
_hooks: tuple[ForkHooks, ...] = ()
#: Serialises writers only. Replaced in the child: another thread may have held it at the fork.
_lock = threading.Lock()
#: The handles a fork in progress started with, so its after-hooks pair with its before-hooks.
_forking: Optional[tuple[ForkHooks, ...]] = None


def at_fork(
    *,
    before: Optional[Hook] = None,
    after_in_parent: Optional[Hook] = None,
    after_in_child: Optional[Hook] = None,
) -> ForkHooks:
    """Call hooks around every ``os.fork()`` of this process, like ``os.register_at_fork``.

    ``before`` runs in the parent just before the fork (newest registration first), the
    ``after_*`` hooks just after it, in the parent or the child (oldest first). The usual job: close
    connections in ``before`` and let each process reconnect on its own. A hook that raises is
    logged and the others still run. A fork calls the hooks registered when it began; they are
    inherited by forked children, as with ``os.register_at_fork``. Returns a handle:
    ``handle.cancel()`` unregisters them, and so does leaving it as a context manager.
    """
    global _hooks
    if not hasattr(os, "register_at_fork"):
        raise NotImplementedError(
            "graceful.at_fork() wraps os.register_at_fork(), which this Python does not have "
            f"({sys.platform}: no os.fork()), so there is no fork to hook: child processes start "
            "afresh (multiprocessing's spawn method) and inherit no connections; open them in "
            "each process instead"
        )
    for name, func in (
        ("before", before),
        ("after_in_parent", after_in_parent),
        ("after_in_child", after_in_child),
    ):
        if func is not None:
            check_callable(func, f"graceful.at_fork({name}=...)")
    if before is None and after_in_parent is None and after_in_child is None:
        raise TypeError(
            "graceful.at_fork() needs at least one hook: pass before=, after_in_parent= "
            "or after_in_child= as a keyword argument (None means no hook: pass the function "
            "itself, such as conn.close, not the result of calling it)"
        )
    handle = ForkHooks(before, after_in_parent, after_in_child)
    with _lock:
        _hooks = (*_hooks, handle)
    return handle


def _call(func: Hook, when: str) -> None:
    try:
        func()
    except BaseException:  # a hook must not stop the fork or the other hooks
        _timeline.log_exception(
            "graceful: at_fork %s hook %s raised; the remaining ones still run",
            when,
            _registry.describe(func),
        )


def run_before() -> None:
    """Before a fork (``_core/forking.py``): the ``before`` hooks, newest first."""
    global _forking
    _forking = _hooks
    for handle in reversed(_forking):
        if handle.before is not None:
            _call(handle.before, "before")


def _take_forking() -> tuple[ForkHooks, ...]:
    global _forking
    # None if graceful was imported during this fork (by another library's before-hook).
    started, _forking = (_hooks if _forking is None else _forking), None
    return started


def run_after_in_parent() -> None:
    for handle in _take_forking():
        if handle.after_in_parent is not None:
            _call(handle.after_in_parent, "after_in_parent")


def after_fork_in_child() -> None:
    """A lock another thread may have held at the fork must not stay held here."""
    global _lock
    _lock = threading.Lock()


def run_after_in_child() -> None:
    for handle in _take_forking():
        if handle.after_in_child is not None:
            _call(handle.after_in_child, "after_in_child")
