"""``@graceful.main``: a program's entry point, guarded, whose return value is its exit status."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, NoReturn, Optional, Union, overload

from . import registry as _registry
from . import shutdown as _shutdown
from . import signals as _signals
from .guard import guard
from .registry import _P


@overload
def main(func: Callable[_P, Optional[int]], /) -> Callable[_P, NoReturn]: ...


@overload
def main(
    *,
    signals: tuple[_signals.SignalLike, ...] = (),
    timeout: Optional[float] = _shutdown.DEFAULT_TIMEOUT,
    on_signal: str = "reraise",
    exit_code: Optional[int] = None,
    on_second_signal: str = "force",
    override_ignored: bool = False,
) -> Callable[[Callable[_P, Optional[int]]], Callable[_P, NoReturn]]: ...


def main(
    func: Optional[Callable[..., Optional[int]]] = None,
    /,
    **options: Any,
) -> Union[
    Callable[..., NoReturn], Callable[[Callable[..., Optional[int]]], Callable[..., NoReturn]]
]:
    """Run ``func`` inside :func:`graceful.guard` and exit with its result.

    An int return value is the exit status; None exits 0. On a normal return or an uncaught
    exception the registered cleanups run first (before Python joins non-daemon threads), then
    the program exits as Python would. Options are those of :func:`graceful.guard`, with the
    signals given as ``signals=(...)``. Usable bare (``@graceful.main``) or called.
    """
    signals = tuple(options.pop("signals", ()))
    # Validate now, at decoration time, not when the program is already running.
    guard(*signals, **options)

    def decorate(f: Callable[..., Optional[int]]) -> Callable[..., NoReturn]:
        if not callable(f):
            raise TypeError(f"@graceful.main decorates a function, got {type(f).__name__}")

        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> NoReturn:
            try:
                with guard(*signals, **options):
                    status = f(*args, **kwargs)
            finally:
                _registry.cleanups.run_all()
            sys.exit(status)

        return run

    if func is not None:
        return decorate(func)
    return decorate
