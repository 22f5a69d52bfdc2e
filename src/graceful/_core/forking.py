"""The one fork path: a single ``os.register_at_fork`` that resets every module in a stated order.

Registered when the first module with state is loaded (the registry imports this one). Each step
is called only if its module is loaded: a module that was never imported has nothing to reset.
Around the fork, the watcher thread steps aside (a thread holding a lock at the fork would leave it
held in the child), and the users' ``graceful.at_fork`` hooks run (``_process/fork.py``).

multiprocessing children started by fork or forkserver end with ``os._exit``: before 3.13 no
``atexit`` function runs there, and from 3.13 the inherited ones (graceful's included) are cleared
first. So each such child also runs its own cleanups from a multiprocessing finalizer.
"""

import os
import sys

from .modules import loaded
from .protect import exit_path

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

#: In a forked child, in this order, each module's ``after_fork_in_child()`` (if the module is
#: loaded: one never imported has nothing to reset): the forking thread becomes the main one,
#: what was registered is dropped, the shutdown state, the ending and the timeline start afresh,
#: the watcher's pipe is closed (its thread is gone), the guards go inert; then the process
#: modules (the parent-death lifeline); then the users' hooks. A module named here that lacks
#: the function is an error (logged, and tests/test_fork.py checks every step exists). Tracked
#: backends need no step: the tracker notices the new PID itself.
CHILD_STEPS = (
    ("graceful._core.threads", "taking the forking thread for the main one in a forked child"),
    ("graceful._core.registry", "dropping the parent's cleanups in a forked child"),
    ("graceful._core.machine", "resetting the shutdown state in a forked child"),
    ("graceful._core.ending", "resetting the ending in a forked child"),
    ("graceful._core.timeline", "resetting the timeline in a forked child"),
    ("graceful._core.receipt", "forgetting the parent's receipt in a forked child"),
    ("graceful._core.watcher", "closing the inherited signal watcher pipe"),
    ("graceful._core.guard", "making inherited guards inert in a forked child"),
    ("graceful._process.parent_death", "closing the parent's lifeline"),
    ("graceful._process.fork", "taking over the at_fork hooks"),
)

_USER_HOOKS = "graceful._process.fork"

#: True in a forked child (of a process that had imported graceful): its inherited ``atexit``
#: functions are mostly the parent's, and must not run when it dies by a signal.
forked = False


def _loaded(name: str) -> "Any":
    return loaded(name)


def _step(module: "Any", function: str, what: str) -> None:
    """graceful's own fork steps: a failure is logged, never raised into the fork. A module that
    is not loaded has nothing to do; a loaded one without the step is a mistake of graceful's."""
    if module is None:
        return
    try:
        step = getattr(module, function)
        step()
    except BaseException:
        from .timeline import log_exception

        log_exception("graceful: %s failed", what)


# CPython calls fork hooks from C and swallows what they raise: a ``Signalled`` raised inside one
# would be lost, and the shutdown with it. So graceful's handler never raises in these frames (nor
# in the user hooks they call); a signal that arrives meanwhile is delivered again afterwards.

#: The forking thread's signal mask before the fork (None: nothing was blocked). From the last
#: before-hook until the child has reset its state, the forking thread blocks every catchable
#: signal: a child inherits the parent's handlers and its wakeup fd (the watcher's pipe, shared
#: with the parent), so a signal it got before its own reset (a pool's break stopping a worker
#: it has just forked) wrote its byte into the parent's pipe, and the parent's watcher heard it
#: as the parent's own (a second SIGTERM: the end forced, the cleanups skipped). Blocked, it
#: waits in the child until the child's handlers and wakeup fd are its own again; in the
#: parent, it waits until the fork has returned.
_mask: "Optional[set[int]]" = None


def _block_for_the_fork() -> None:
    global _mask
    dispositions = _loaded("graceful._core.dispositions")  # loaded by every guard's entry
    if dispositions is not None:
        try:
            _mask = dispositions.block(dispositions.ASYNC_SIGNALS)
        except (OSError, ValueError):
            _mask = None


def _unblock_after_the_fork() -> None:
    global _mask
    mask, _mask = _mask, None
    dispositions = _loaded("graceful._core.dispositions")
    if mask is not None and dispositions is not None:
        try:
            dispositions.set_mask(mask)
        except (OSError, ValueError):
            pass


@exit_path
def _before() -> None:
    hook_multiprocessing()
    _step(_loaded(_USER_HOOKS), "run_before", "running the at_fork before-hooks")
    # Last, so signals that arrive during the hooks are still handled at once.
    _step(_loaded("graceful._core.watcher"), "before_fork", "pausing the watcher before a fork")
    _block_for_the_fork()


@exit_path
def _after_in_parent() -> None:
    _unblock_after_the_fork()  # a signal that came meanwhile: its byte waits for the watcher
    _step(_loaded("graceful._core.watcher"), "after_fork_in_parent", "restarting the watcher")
    _step(_loaded(_USER_HOOKS), "run_after_in_parent", "running the at_fork parent hooks")
    machine_module = _loaded("graceful._core.machine")
    if machine_module is not None and machine_module.machine.want_raise():
        machine_module.machine.defer()  # a signal came during the fork: raise it afterwards


@exit_path
def _after_in_child() -> None:
    global forked
    forked = True
    for name, what in CHILD_STEPS:
        _step(_loaded(name), "after_fork_in_child", what)
    _unblock_after_the_fork()  # the child's own handlers and wakeup fd hear what came meanwhile
    _step(_loaded(_USER_HOOKS), "run_after_in_child", "running the at_fork child hooks")


class _Anchor:
    """multiprocessing holds after-fork callbacks in a WeakValueDictionary: this keeps ours."""


_anchor: "Optional[_Anchor]" = None


def hook_multiprocessing() -> None:
    """Once multiprocessing is in use here, have each of its children run its own cleanups.

    Never imports multiprocessing: it is hooked at the first fork after something else did.
    """
    global _anchor
    util = loaded("multiprocessing.util")
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
    util.Finalize(None, _run_cleanups, exitpriority=0)


def _run_cleanups() -> None:
    """The child's own cleanups, as it ends (nothing was registered if the registry is not
    loaded: this module never imports it, the registry imports this one)."""
    registry = loaded("graceful._core.registry")
    if registry is not None:
        registry.cleanups.run_all()


hook_multiprocessing()  # in a forkserver or spawned child, multiprocessing came first
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
