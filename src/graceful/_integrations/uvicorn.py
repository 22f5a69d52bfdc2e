"""uvicorn run from Python (``uvicorn.Server``), inside ``@graceful.main``: uvicorn keeps its own
graceful stop (stop accepting, finish the requests in flight within ``timeout_graceful_shutdown``,
the lifespan's shutdown), graceful adds the drain, its cleanups and the death by the signal.

uvicorn installs ``Server.handle_exit`` for SIGINT and SIGTERM while it serves, and re-raises each
signal it captured when it returns. Here ``handle_exit`` is a :class:`~.servers.Stopper` that
stops the server by its ``should_exit`` flag: nothing is captured, so nothing is replayed, and
graceful's guard ends the process by the signal once the server has returned and the cleanups
have run. The guard's other signals (SIGHUP, SIGQUIT) stop it the same way. uvicorn is imported
by the caller, never here.
"""

from __future__ import annotations

from .servers import Installed, Stopper

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any


def _stopper(server: Any) -> Stopper:
    if not hasattr(server, "should_exit") or not hasattr(server, "handle_exit"):
        raise TypeError(
            "graceful.integrations.uvicorn: pass a uvicorn.Server (uvicorn.Server(uvicorn."
            f"Config(app, ...))), got {type(server).__name__} {server!r}"
        )
    own = server.handle_exit
    if isinstance(own, Stopper):
        return own

    def stop(sig: int) -> None:
        server.should_exit = True  # uvicorn polls it ten times a second

    stopper = Stopper(stop, own, what="uvicorn")
    server.handle_exit = stopper  # what its capture_signals() installs
    return stopper


def run(server: Any) -> None:
    """``server.run()`` with graceful in front of its signals (see the module)."""
    with Installed(_stopper(server)):
        server.run()


async def serve(server: Any) -> None:
    """``await server.serve()`` with graceful in front of its signals, for an async main."""
    with Installed(_stopper(server)):
        await server.serve()
