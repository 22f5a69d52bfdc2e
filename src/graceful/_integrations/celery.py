"""celery: graceful's cleanups in the worker's main process and in each pool process, exactly once,
on a warm shutdown (SIGTERM, a first SIGINT) and on a cold one (SIGQUIT, a second SIGINT).

celery sends ``worker_shutdown`` in the main process and ``worker_process_shutdown`` in a prefork
pool process that exits normally; each runs ``graceful.shutdown()`` there. A cold shutdown
terminates the pool processes with SIGTERM, which they take at the default (they die, no hook):
``worker_process_init`` gives each pool process a SIGTERM handler that runs graceful's shutdown,
then dies by the signal as before. The receivers are module functions connected with
``weak=False`` and a ``dispatch_uid``: celery's ``Signal.connect`` keeps weak references by
default (a lambda would be collected at once), and installing twice connects once.
celery is imported by :func:`install`, never at ``import graceful``.
"""

from __future__ import annotations

import signal

from .._core.checks import check_timeout
from .._core.options import DEFAULT_TIMEOUT
from . import frameworks as _frameworks

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

_timeout: list[Optional[float]] = [DEFAULT_TIMEOUT]


def install(*, timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
    """Connect graceful's shutdown to celery's worker signals (see the module); call it where
    the worker imports your tasks (the module that makes the ``Celery`` app)."""
    from celery import signals  # type: ignore[import-untyped]

    _timeout[0] = check_timeout(timeout, "graceful.integrations.celery.install()")
    for sig, receiver in (
        (signals.worker_shutdown, _shutdown),
        (signals.worker_process_shutdown, _shutdown),
        (signals.worker_process_init, _in_pool_process),
    ):
        sig.connect(receiver, weak=False, dispatch_uid=f"graceful.{receiver.__name__}")


def _shutdown(**_: Any) -> None:
    _frameworks.shutdown(timeout=_timeout[0])


def _in_pool_process(**_: Any) -> None:
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _frameworks.shutdown_then_die(_timeout[0]))
