"""Modules loaded on first use, looked up without importing them.

``sys.modules`` holds a module from the moment its body starts to run: another thread (or a
signal handler run in the middle of that body) would see it half-initialised, with some of its
names missing. :func:`loaded` hands out a module only once its body has completed; until then it
is as if it were not loaded. A caller that needs the module itself imports it instead: the
import system makes another thread wait until the body is done.
"""

import sys

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Callable, Optional


def loaded(name: str) -> "Optional[ModuleType]":
    """The module ``name`` if it has been imported completely, else None."""
    module = sys.modules.get(name)
    if module is None:
        return None
    # importlib marks the spec while the body runs (``_bootstrap._load_unlocked``, 3.4 to 3.13),
    # and decides on that mark itself whether an importer must wait for another thread.
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


# --- What _core uses but may not import ---------------------------------------------------------
#
# The async drivers are a higher layer (``_asyncio``, ``_trio``), and the interpreter's exit hook
# (``at_exit.py``) imports the guard, which imports the registry that needs the hook: ``_core``
# imports neither (``tests/test_layers.py``). It names the role it needs (or asks which async
# drivers there are, and which of them runs the current task: ``guard.py``); the facade
# (``graceful/__init__.py``, in no layer: it loads every layer on first use already) says at
# ``import graceful`` which module plays each role, and how to load it. The table is filled
# before any other graceful module can run and never changes after: any thread may read it.

_roles: "dict[str, str]" = {}
_load: "Optional[Callable[[str], ModuleType]]" = None
_drivers: "tuple[str, ...]" = ()
#: Each role's module once loaded: a plain guard's entry asks the loaded drivers every time.
_provided: "dict[str, ModuleType]" = {}


def provide(
    load: "Callable[[str], ModuleType]",
    roles: "dict[str, str]",
    drivers: "tuple[tuple[str, str], ...]" = (),
) -> None:
    """The facade's call: ``roles`` maps each role to the module that plays it, ``load``
    imports a module by its name. ``drivers`` are the async drivers, in the order they are
    asked, each as (the library it drives, its module): the library's name is its role."""
    global _load, _drivers
    _roles.update(roles)
    _roles.update(drivers)
    _drivers = tuple(library for library, _ in drivers)
    _load = load


def drivers() -> "tuple[str, ...]":
    """The libraries that an async driver drives (each its role), in the order they are asked;
    the last is the default."""
    return _drivers


def provider(role: str) -> "ModuleType":
    """The module that plays ``role``, loaded now if it is not yet (the import system makes
    another thread wait while its body runs); after that, a dict lookup."""
    module = _provided.get(role)
    if module is not None:
        return module
    name = _roles.get(role)
    if name is None or _load is None:
        raise RuntimeError(
            f"graceful: nothing provides {role!r}: graceful's private modules were loaded "
            "without the package's __init__ (import graceful first)"
        )
    module = _provided[role] = _load(name)
    return module
