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
    from typing import Optional


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
