"""``python -I -S <path>/graceful/_cli/standalone.py ARGS``: ``graceful run ARGS``, as
``graceful.spawn(supervise=True)`` starts it.

Run by path with ``-I -S``, like the exec launcher: it needs nothing from site-packages and works
whatever ``sys.path`` the parent had (a checkout on PYTHONPATH, an editable install). It loads
graceful's private modules under a bare ``graceful`` package, without running
``graceful/__init__.py``: the supervisor uses none of the public API, and skipping it saves about
half of the supervisor's start-up time and a few MiB (see benchmarks/cli_costs.py).
"""

import os
import sys
import types


def _bare_package() -> None:
    """Make ``graceful.*`` importable from this file's location, without graceful/__init__."""
    package = types.ModuleType("graceful")
    package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    sys.modules["graceful"] = package


if __name__ == "__main__":
    _bare_package()
    from graceful._cli import main

    sys.argv[1:1] = ["run"]  # main() reads sys.argv: then it ends the process itself, fast
    sys.exit(main())
