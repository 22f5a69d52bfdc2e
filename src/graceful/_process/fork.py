"""Fork hooks: what a forked child must forget, and ``at_fork``, a cancellable os.register_at_fork.

graceful registers with ``os.register_at_fork`` once, at import, here; every module's own fork
step is called from here, in the order :func:`_after_in_child` states. Its steps wrap the
``at_fork`` hooks: the signal watcher thread pauses after the ``before`` hooks and resumes before
the ``after_in_parent`` ones, and in the child the parent's cleanups are dropped and inherited
guards made inert before the ``after_in_child`` hooks run.
``os.register_at_fork`` cannot unregister and prints a raising hook as "Exception ignored";
``at_fork`` hooks can be cancelled, and one that raises is logged to the "graceful" logger with
its traceback while the others still run.

multiprocessing children started by fork or forkserver end with ``os._exit``: before 3.13 no
``atexit`` handler runs there, and from 3.13 the inherited ones (graceful's included) are cleared
first. So each such child also runs its own cleanups from a multiprocessing finalizer.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import Callable, Optional

from .._core import ending as _ending
from .._core import guard as _guard
from .._core import registry as _registry
from .._core import timeline as _timeline
from .._core import watcher as _watcher
from .._core.checks import check_callable
from .._core.machine import machine
from .._core.protect import exit_path

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


def _internal(step: Callable[[], object], what: str) -> None:
    """graceful's own fork steps: a failure is logged, never raised into the fork."""
    try:
        step()
    except BaseException:
        _timeline.log_exception("graceful: %s failed", what)


class _Anchor:
    """multiprocessing holds after-fork callbacks in a WeakValueDictionary: this keeps ours."""


_anchor: Optional[_Anchor] = None


def _hook_multiprocessing() -> None:
    """Once multiprocessing is in use here, have each of its children run its own cleanups.

    Never imports multiprocessing: it is hooked at the first fork after something else did.
    """
    global _anchor
    util = sys.modules.get("multiprocessing.util")
    if util is None or _anchor is not None:
        return
    _anchor = _Anchor()
    # Runs in the child, inside Process._bootstrap, after multiprocessing has cleared the
    # inherited finalizers and (3.13) atexit handlers; spawned children call it too.
    util.register_after_fork(_anchor, _in_multiprocessing_child)


def _in_multiprocessing_child(anchor: _Anchor) -> None:
    util = sys.modules["multiprocessing.util"]
    # util._exit_function runs finalizers as the child ends, on every start method and version;
    # the cleanups run at most once however many exit paths reach them.
    util.Finalize(None, _registry.cleanups.run_all, exitpriority=0)


# CPython calls fork hooks from C and swallows what they raise: a ``Signalled`` raised inside one
# would be lost, and the shutdown with it. So graceful's handler never raises in these frames (nor
# in the user hooks they call); a signal that arrives meanwhile is delivered again afterwards.


@exit_path
def _before() -> None:
    global _forking
    _hook_multiprocessing()
    _forking = _hooks
    for handle in reversed(_forking):
        if handle.before is not None:
            _call(handle.before, "before")
    # Last, so signals that arrive during the hooks are still handled at once.
    _internal(_watcher.before_fork, "pausing the signal watcher before a fork")


def _take_forking() -> tuple[ForkHooks, ...]:
    global _forking
    # None if graceful was imported during this fork (by another library's before-hook).
    started, _forking = (_hooks if _forking is None else _forking), None
    return started


@exit_path
def _after_in_parent() -> None:
    _internal(_watcher.after_fork_in_parent, "restarting the signal watcher after a fork")
    for handle in _take_forking():
        if handle.after_in_parent is not None:
            _call(handle.after_in_parent, "after_in_parent")
    if machine.want_raise():
        machine.defer()  # a signal came during the fork: raise it once we are out of here


def _process_step(module: str, what: str) -> None:
    """A process module's own child step, if graceful loaded that module."""
    step = getattr(sys.modules.get(module), "after_fork_in_child", None)
    if step is not None:
        _internal(step, what)


@exit_path
def _after_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    # graceful's own state first, in this order, so a hook may register the child's cleanups
    # or enter a guard: what was registered, the shutdown state, how a process ends, the
    # timeline, the watcher thread (gone), the guards (inert, dispositions back), then the
    # process modules: tracked backends, the parent-death lifeline, the spawner thread.
    _internal(_registry.after_fork_in_child, "dropping the parent's cleanups in a forked child")
    _internal(machine.after_fork_in_child, "resetting the shutdown state in a forked child")
    _internal(_ending.after_fork_in_child, "resetting the ending in a forked child")
    _internal(_timeline.after_fork_in_child, "resetting the timeline in a forked child")
    _internal(_watcher.after_fork_in_child, "closing the inherited signal watcher pipe")
    _internal(_guard.after_fork_in_child, "making inherited guards inert in a forked child")
    _process_step("graceful._process.backends", "forgetting the parent's backends")
    _process_step("graceful._process.parent_death", "closing the parent's lifeline")
    _process_step("graceful._process.spawn", "forgetting the parent's spawner thread")
    for handle in _take_forking():
        if handle.after_in_child is not None:
            _call(handle.after_in_child, "after_in_child")


_hook_multiprocessing()  # in a forkserver or spawned child, multiprocessing came first
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
