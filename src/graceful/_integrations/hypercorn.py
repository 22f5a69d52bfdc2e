"""hypercorn's command with ``--workers N``: each worker, from its lifespan's startup.

hypercorn's master stops its workers through a shared event (SIGTERM and SIGINT set it; each
worker then finishes its requests within ``--graceful-timeout`` and runs the lifespan's
shutdown). But the master waits only until the first worker exits, then SIGTERMs the others:
their SIGTERM is at the default, so a worker still finishing a request dies at once, the request
is cut and its lifespan's shutdown (graceful's cleanups) never runs.

:func:`install` gives the worker a SIGTERM handler for that: the worker is stopping already (or
will be: its master's word is the shared event), so SIGTERM starts graceful's shutdown deadline
and nothing else; hypercorn finishes the requests, the lifespan's ``await graceful.ashutdown()``
runs the cleanups, and the worker exits as hypercorn ends it. If it has not by the deadline, it
dies by SIGTERM. The master sends SIGTERM twice (``terminate()``, then again at its exit: its
workers are daemons): every SIGTERM after the first is absorbed. Where SIGTERM is handled already
(hypercorn's single process, ``serve()`` under ``@graceful.main``), it does nothing. hypercorn is
never imported.
"""

from __future__ import annotations

import signal as _signal

from .._core import timeline as _timeline
from .._core.checks import check_main_thread
from .._core.modules import loaded
from .._core.options import DEFAULT_TIMEOUT
from .frameworks import begin

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

_WHAT = "graceful.integrations.hypercorn.install()"


def install(*, timeout: Optional[float] = DEFAULT_TIMEOUT) -> bool:
    """In a worker of ``hypercorn --workers N`` (call it in the lifespan's startup): its master's
    SIGTERM no longer cuts the requests the worker is finishing. ``timeout`` bounds the worker's
    stop from that SIGTERM (None: no deadline). Returns False, doing nothing, where SIGTERM is
    handled already (not a worker of hypercorn's master)."""
    check_main_thread(_WHAT)
    if _signal.getsignal(_signal.SIGTERM) is not _signal.SIG_DFL:
        return False
    worker = _StoppingWorker(timeout)
    loop = _running_loop()
    if loop is not None:
        loop.add_signal_handler(_signal.SIGTERM, worker.heard)  # run in the loop, between callbacks
    else:
        _signal.signal(_signal.SIGTERM, lambda sig, frame: worker.heard())
    return True


def _running_loop() -> Any:
    asyncio = loaded("asyncio")
    return None if asyncio is None else asyncio.events._get_running_loop()


class _StoppingWorker:
    """The worker's SIGTERM handler: the first starts graceful's deadline; the others (the
    master sends two: ``terminate()``, then again at its exit, its workers being daemons) are
    absorbed."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.timeout = timeout
        self.began = False

    def heard(self) -> None:
        if self.began:
            return
        self.began = True
        _timeline.log_info(
            "graceful: SIGTERM: this hypercorn worker finishes its requests (its master stops "
            "it), then its lifespan's shutdown runs the cleanups"
        )
        begin(self.timeout, _WHAT)  # the deadline (it dies by SIGTERM), the break callbacks

    def __repr__(self) -> str:
        return "<graceful: a hypercorn worker finishing on SIGTERM>"
