"""gunicorn's server hooks, for a ``gunicorn.conf.py``: graceful's cleanups in every worker and in
the master, exactly once; a drain in the master on SIGTERM; gunicorn's own signals kept
(SIGHUP still reloads, SIGTTIN/SIGTTOU still scale, SIGINT/SIGQUIT still stop at once).

- ``worker_exit`` (a worker stops: SIGTERM, a SIGHUP reload, ``max_requests``) and ``on_exit``
  (the master stops) run ``graceful.shutdown()``: each process runs the cleanups it registered.
- ``post_worker_init``, for uvicorn's ``UvicornWorker``: that worker resets gunicorn's handlers
  to the default, and uvicorn re-raises the signal it stopped on, so the worker dies by it and
  ``worker_exit`` never runs. Here the re-raised signal runs graceful's shutdown first (then the
  worker dies by it, as before); and SIGQUIT, which the worker ignores until gunicorn kills it
  after ``graceful_timeout``, stops uvicorn as SIGINT would.
- With ``drain=`` seconds, the master's first SIGTERM starts a drain: every worker's
  ``graceful.draining`` is set (their readiness probes fail) while they serve on; then gunicorn
  gets its SIGTERM and stops as usual. A second SIGTERM ends the drain early; SIGINT and SIGQUIT
  stop at once. Workers hear it through a pipe whose write end only the master holds: closing it
  is an end-of-file every worker sees, including one started during the drain.

gunicorn is never imported here: the hooks get gunicorn's objects as arguments.
"""

from __future__ import annotations

import os
import signal

from .._core.options import DEFAULT_TIMEOUT, Options
from . import frameworks as _frameworks

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable, Optional

HOOKS = ("when_ready", "post_fork", "post_worker_init", "worker_exit", "on_exit")


class Hooks:
    """The hooks with their options (:func:`hooks` makes them for a ``gunicorn.conf.py``)."""

    def __init__(self, *, drain: float = 0.0, timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
        options = Options.parse(what="graceful.integrations.gunicorn.hooks()", drain=drain,
                                timeout=timeout)  # fmt: skip
        self.drain = options.drain
        self.timeout = options.timeout
        self._pipe: Optional[tuple[int, int]] = None
        self._timer: Any = None

    # --- the master -------------------------------------------------------------------------

    def when_ready(self, server: Any) -> None:
        """The master is ready (its handlers are in place, no worker yet): set up the drain."""
        if not self.drain:
            return
        self._pipe = os.pipe()
        os.set_inheritable(self._pipe[0], True)
        own = signal.getsignal(signal.SIGTERM)
        if not callable(own):
            return
        signal.signal(signal.SIGTERM, self._make_term(server, own))

    def _make_term(
        self, server: Any, own: Callable[[int, Optional[FrameType]], Any]
    ) -> Callable[[int, Optional[FrameType]], None]:
        import threading

        lock = threading.Lock()
        state = {"draining": False, "stopped": False}

        def stop() -> None:
            with lock:
                if state["stopped"]:
                    return
                state["stopped"] = True
            server.log.info("graceful: drain over, stopping")
            own(signal.SIGTERM, None)  # gunicorn's handler only queues the signal: any thread

        def on_term(sig: int, frame: Optional[FrameType]) -> None:
            with lock:
                first = not state["draining"]
                state["draining"] = True
            if not first:
                stop()  # a second SIGTERM ends the drain early
                return
            self._close_write_end()  # every worker: graceful.draining
            server.log.info("graceful: SIGTERM: draining for %g s", self.drain)
            timer = threading.Timer(self.drain, stop)
            timer.daemon = True
            timer.start()
            self._timer = timer

        return on_term

    def _close_write_end(self) -> None:
        if self._pipe is not None and self._pipe[1] >= 0:
            os.close(self._pipe[1])
            self._pipe = (self._pipe[0], -1)

    def on_exit(self, server: Any) -> None:
        """The master stops: its own cleanups."""
        _frameworks.shutdown(timeout=self.timeout)

    # --- a worker -----------------------------------------------------------------------------

    def post_fork(self, server: Any, worker: Any) -> None:
        """In a new worker: hear the master's drain."""
        if self._pipe is None:
            return
        read, write = self._pipe
        if write >= 0:
            os.close(write)  # only the master holds it: its close is every worker's EOF
        self._pipe = None
        import threading

        threading.Thread(
            target=_wait_for_drain, args=(read,), name="graceful-gunicorn-drain", daemon=True
        ).start()

    def post_worker_init(self, worker: Any) -> None:
        """UvicornWorker: its re-raised signal runs graceful's shutdown; SIGQUIT stops it."""
        if not _is_uvicorn_worker(worker):
            return
        timeout = self.timeout
        for sig in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _frameworks.shutdown_then_die(timeout))
        own_exit = worker.handle_exit

        def handle_exit(sig: int, frame: Optional[FrameType]) -> None:
            own_exit(sig, frame)
            if sig == signal.SIGQUIT:
                signal.raise_signal(signal.SIGINT)  # uvicorn's handler: a quick stop

        worker.handle_exit = handle_exit  # what its SIGQUIT handler calls

    def worker_exit(self, server: Any, worker: Any) -> None:
        """A worker stops: its own cleanups."""
        _frameworks.shutdown(timeout=self.timeout)

    def as_dict(self) -> dict[str, Callable[..., None]]:
        return {name: getattr(self, name) for name in HOOKS}


def _wait_for_drain(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        return
    finally:
        os.close(fd)
    import graceful

    graceful.draining.set()


def _is_uvicorn_worker(worker: Any) -> bool:
    return any(
        cls.__module__.startswith("uvicorn") and cls.__name__ == "UvicornWorker"
        for cls in type(worker).__mro__
    )


def hooks(
    *, drain: float = 0.0, timeout: Optional[float] = DEFAULT_TIMEOUT
) -> dict[str, Callable[..., None]]:
    """gunicorn's hooks, by name, for a ``gunicorn.conf.py``::

        import graceful.integrations.gunicorn
        globals().update(graceful.integrations.gunicorn.hooks(drain=10))

    ``drain``: seconds the master drains on SIGTERM before gunicorn stops; ``timeout``: the
    deadline of each process's cleanups. A hook of your own calls ours first.
    """
    return Hooks(drain=drain, timeout=timeout).as_dict()
