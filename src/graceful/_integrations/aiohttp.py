"""aiohttp's ``web.run_app`` inside ``@graceful.main``: aiohttp keeps its own graceful stop (its
runner's cleanup waits up to ``shutdown_timeout`` for the requests in flight), graceful adds the
drain, its cleanups, and the death by the signal.

``web.run_app`` with its own signal handling takes SIGINT and SIGTERM through the event loop
(``loop.add_signal_handler``), so graceful never hears them and the program exits 0. Here
run_app runs with ``handle_signals=False`` and a :class:`~.servers.Stopper` on the guard's
signals stops it the way aiohttp's own handler does (``GracefulExit`` raised in its loop).
aiohttp is imported when :func:`run_app` is called, never at ``import graceful``.
"""

from __future__ import annotations

from .servers import stopping

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any


def run_app(app: Any, **kwargs: Any) -> None:
    """``aiohttp.web.run_app(app, **kwargs)`` with graceful in front of its signals."""
    import asyncio

    from aiohttp import web
    from aiohttp.web_runner import GracefulExit

    if "handle_signals" in kwargs:
        raise TypeError(
            "graceful.integrations.aiohttp.run_app(): handle_signals is graceful's to set (the "
            "guard's signals stop the server); call aiohttp.web.run_app directly to choose it"
        )
    loop = kwargs.pop("loop", None) or asyncio.new_event_loop()

    def exit_now() -> None:
        raise GracefulExit  # what aiohttp's own signal handler raises, in its loop

    def stop(sig: int) -> None:
        try:
            loop.call_soon_threadsafe(exit_now)
        except RuntimeError:
            pass  # the loop is closed: run_app has returned

    with stopping(stop, what="aiohttp"):
        web.run_app(app, handle_signals=False, loop=loop, **kwargs)
