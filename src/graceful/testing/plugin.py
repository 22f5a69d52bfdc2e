"""The pytest plugin (entry point ``pytest11``, name ``graceful``): the ``shutdown`` fixture.

Loading it imports nothing but this module; the harness is imported when a test asks for the
fixture. Disable it with ``-p no:graceful``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._fixture import Shutdown


@pytest.fixture
def shutdown() -> Iterator[Shutdown]:
    """Start programs, signal them and check how they ended (``graceful.testing``).

    ``shutdown.start(...)`` returns a running :class:`graceful.testing.Program`;
    ``shutdown.run(...)`` starts, signals and returns a :class:`graceful.testing.ShutdownResult`;
    ``shutdown.sweep(...)`` signals the program at every line of its own code, one run each.
    Every program started during the test is killed at its end, with everything it started.
    """
    from ._fixture import Shutdown

    harness = Shutdown()
    try:
        yield harness
    finally:
        harness.close()
