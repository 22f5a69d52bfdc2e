"""graceful: end a Python program well.

On HUP, INT, QUIT and TERM, run the cleanups you registered, exactly once and newest first, then
die by the same signal so the parent sees the truth; never run them in a forked child.

The public names are loaded on first use (PEP 562): ``import graceful`` costs next to nothing,
and a program pays only for what it uses (a guard, backends, asyncio, the CLI).
"""

import sys as _sys

from ._core import forking as _forking  # noqa: F401  (the one fork hook, from the start)
from ._core import modules as _modules
from ._version import __version__


def _load(module: str) -> "_ModuleType":
    __import__(module)  # not importlib.import_module: importing importlib loads warnings too
    if module not in _sys.modules:
        # Another thread was importing it, and its import failed while this one waited for it
        # (CPython then hands the waiter the failed module): import it here, anew.
        __import__(module)
    return _sys.modules[module]


#: What _core uses without importing it (a higher layer, or a module that imports the one that
#: needs it): each role and the module that plays it, loaded on first use (``modules.provider``).
#: The async drivers, in the order they are asked, each as the library it drives (its role, and
#: ``@graceful.main(backend=)``'s name) and its module: the first whose library is loaded and
#: whose ``running()`` says it runs the current task drives ``async with graceful.guard()``; the
#: last is the default. A driver module offers ``running``, ``enter``/``exit`` and ``run``
#: (``@graceful.main``). A new driver is its module and one line here (docs/internals.md).
_modules.provide(
    _load,
    {"exit hook": f"{__name__}._core.at_exit"},
    drivers=(
        ("trio", f"{__name__}._trio.driver"),  # trio, anyio on trio
        ("asyncio", f"{__name__}._asyncio.guard"),  # asyncio, uvloop, anyio on asyncio
    ),
)

#: Each public name, and the private module that defines it.
_WHERE = {
    "DEFAULT_TIMEOUT": "_core.options",
    "ForkHooks": "_process.fork",
    "Guard": "_core.guard",
    "RegistrationClosed": "_core.errors",
    "Signalled": "_core.errors",
    "ashutdown": "_integrations.frameworks",
    "at_fork": "_process.fork",
    "budget_remaining": "_core.budget",
    "deadline": "_core.budget",
    "die_with_parent": "_process.parent_death",
    "draining": "_core.machine",
    "end_drain": "_core.machine",
    "guard": "_core.guard",
    "main": "_core.main",
    "notify_ready": "_integrations.systemd",
    "register": "_core.registry",
    "register_break": "_core.registry",
    "shutdown": "_integrations.frameworks",
    "shutdown_event": "_core.machine",
    "spawn": "_process.spawn",
    "track": "_process.backends",
    "unregister": "_core.registry",
    "unregister_break": "_core.registry",
}

__all__ = [
    "DEFAULT_TIMEOUT",
    "ForkHooks",
    "Guard",
    "RegistrationClosed",
    "Signalled",
    "__version__",
    "ashutdown",
    "at_fork",
    "budget_remaining",
    "deadline",
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


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'graceful' has no attribute {name!r}")
    value = getattr(_load(f"{__name__}.{where}"), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__} - {"TYPE_CHECKING"})


TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from types import ModuleType as _ModuleType

    from ._core.budget import budget_remaining, deadline
    from ._core.errors import RegistrationClosed, Signalled
    from ._core.guard import Guard, guard
    from ._core.machine import draining, end_drain, shutdown_event
    from ._core.main import main
    from ._core.options import DEFAULT_TIMEOUT
    from ._core.registry import register, register_break, unregister, unregister_break
    from ._integrations.frameworks import ashutdown, shutdown
    from ._integrations.systemd import notify_ready
    from ._process.backends import track
    from ._process.fork import ForkHooks, at_fork
    from ._process.parent_death import die_with_parent
    from ._process.spawn import spawn
