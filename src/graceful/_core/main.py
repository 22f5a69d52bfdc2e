"""``@graceful.main``: a program's entry point, guarded, whose return value is its exit status."""

from __future__ import annotations

import functools
import sys

# @main always ends through the registry (its cleanups run, and close, when the program ends):
# loaded now, not in the middle of a shutdown (a guard alone loads it only when it must).
from . import registry as _registry  # noqa: F401
from . import timeline as _timeline
from .guard import Guard
from .modules import drivers, provider
from .options import DEFAULT_TIMEOUT, Options

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn, Optional, Union, overload
else:

    def overload(func: object) -> object:  # the overloads are for type checkers only
        return func


if TYPE_CHECKING:
    from asyncio import AbstractEventLoop
    from collections.abc import Awaitable
    from typing import Literal

    from .signals import SignalLike
    from .typevars import _P


@overload
def main(func: Callable[_P, Optional[int]], /) -> Callable[_P, NoReturn]: ...


@overload
def main(func: Callable[_P, Awaitable[Optional[int]]], /) -> Callable[_P, NoReturn]: ...  # noqa: F811  (ruff does not see the overloads above)


@overload
def main(  # noqa: F811  (ruff does not see the overloads above)
    *,
    signals: Union[SignalLike, tuple[SignalLike, ...]] = (),
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    on_signal: Literal["reraise", "exit", "raise"] = "reraise",
    exit_code: Optional[int] = None,
    on_second_signal: Literal["force", "ignore"] = "force",
    override_ignored: bool = False,
    drain: float = 0.0,
    loop_factory: Optional[Callable[[], AbstractEventLoop]] = None,
    backend: Literal["asyncio", "trio"] = "asyncio",
) -> Callable[
    [Callable[_P, Union[Optional[int], Awaitable[Optional[int]]]]], Callable[_P, NoReturn]
]: ...


def main(  # noqa: F811  (ruff does not see the overloads above)
    func: Optional[Callable[..., Any]] = None,
    /,
    *,
    signals: object = (),
    timeout: object = DEFAULT_TIMEOUT,
    on_signal: object = "reraise",
    exit_code: object = None,
    on_second_signal: object = "force",
    override_ignored: object = False,
    drain: object = 0.0,
    loop_factory: Optional[Callable[[], Any]] = None,
    backend: object = "asyncio",
) -> Any:
    """Run ``func`` inside :func:`graceful.guard` and exit with its result.

    An int return value is the exit status; None exits 0. Whichever way ``func`` ends (a return,
    an uncaught exception, a signal), the registered cleanups run inside the guard, before Python
    joins non-daemon threads: a signal during them starts the shutdown's deadline and ends the
    process by that signal once they are done. Options are those of :func:`graceful.guard`, with
    the signals given as ``signals=(...)`` (or one signal). Usable bare or called.

    On an ``async def`` function it runs the coroutine in a new event loop, as ``asyncio.run``
    does (``loop_factory=`` for uvloop and friends): a signal cancels the main task, so
    ``async with`` blocks and ``finally`` clauses unwind; then the other tasks are cancelled,
    the cleanups run in that loop (``async def`` ones awaited), and the process ends as above.
    ``backend="trio"`` runs it with ``trio.run`` instead (as ``anyio.run(..., backend=)``
    names it): a signal cancels the main task's cancel scope.
    """
    options = Options.parse(
        signals,
        what="@graceful.main",
        timeout=timeout,
        on_signal=on_signal,
        exit_code=exit_code,
        on_second_signal=on_second_signal,
        override_ignored=override_ignored,
        drain=drain,
    )

    backends = sorted(drivers())  # the facade's table of async drivers
    if backend not in backends:
        *others, last = map(repr, backends)
        names = f"{', '.join(others)} or {last}" if others else last
        raise ValueError(
            f"@graceful.main: backend must be {names}, got {backend!r} (anyio programs choose "
            "the one they run on, as with anyio.run(..., backend=))"
        )
    if backend != "asyncio" and loop_factory is not None:
        raise TypeError(
            f"@graceful.main: loop_factory chooses an asyncio event loop; {backend} has none to "
            "choose: drop loop_factory, or use backend='asyncio'"
        )
    if loop_factory is not None and not callable(loop_factory):
        raise TypeError(
            f"@graceful.main: loop_factory must be a callable that returns an event loop (such "
            f"as uvloop.new_event_loop), got {type(loop_factory).__name__} {loop_factory!r}"
        )

    def decorate(f: Callable[..., Optional[int]]) -> Callable[..., NoReturn]:
        if _check_entry_point(f):

            @functools.wraps(f)
            def run_async(*args: Any, **kwargs: Any) -> NoReturn:
                # The driver of ``backend`` (a higher layer: loaded through the facade).
                run_loop: Callable[..., NoReturn] = provider(str(backend)).run
                run_loop(f, args, kwargs, options, loop_factory)

            return run_async
        if loop_factory is not None or backend != "asyncio":
            raise TypeError(
                f"@graceful.main: {'loop_factory' if loop_factory is not None else 'backend'} "
                "applies to an `async def` main only; "
                f"{getattr(f, '__qualname__', f)!r} is a plain function"
            )

        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> NoReturn:
            with Guard(options, program=True):
                status = f(*args, **kwargs)
            _timeline.end("normal", None, status if isinstance(status, int) else 0)
            sys.exit(status)

        return run

    if func is not None:
        return decorate(func)
    return decorate


_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


def _check_entry_point(f: object) -> bool:
    """Refuse, at decoration, what ``main`` cannot run (it would print a generator's repr);
    True for a coroutine function."""
    if not callable(f):
        raise TypeError(
            f"@graceful.main decorates the function that runs the program, got "
            f"{type(f).__name__} {f!r}"
        )
    inner: Any = f
    for _ in range(100):
        if isinstance(inner, functools.partial):
            inner = inner.func
        elif hasattr(inner, "__func__"):
            inner = inner.__func__
        else:
            break
    flags = getattr(getattr(inner, "__code__", None), "co_flags", 0)
    name = getattr(f, "__qualname__", repr(f))
    if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
        raise TypeError(
            f"@graceful.main got the generator function {name}: calling it would only create a "
            "generator and run none of its body; decorate a plain function that runs the "
            "program (it may iterate the generator: `for item in gen(): ...`)"
        )
    return bool(flags & _CO_COROUTINE)
