"""Checked by `mypy --strict` in .ci/run, never run: the decorators keep signatures.

Each `type: ignore[...]` marks a call that must be an error; with `warn_unused_ignores` (part of
--strict) the check fails if a decorator ever loses the wrapped function's parameters.
"""

from __future__ import annotations

from typing import NoReturn

from typing_extensions import assert_type

import graceful


@graceful.main
def bare(name: str, *, count: int = 1) -> int:
    return count


@graceful.main(timeout=3.0, on_signal="exit", exit_code=2)
def called(name: str) -> None:
    return None


@graceful.main(backend="trio")
async def on_trio(name: str) -> int:
    return 0


def check_main_on_trio() -> NoReturn:
    on_trio("x")


def check_main_on_trio_keeps_its_signature() -> NoReturn:
    on_trio(1)  # type: ignore[arg-type]


def check_backend_is_checked() -> None:
    graceful.main(backend="curio")  # type: ignore[call-overload]


@graceful.guard("TERM")
def guarded(x: int) -> str:
    return str(x)


def check_guard_decorator() -> None:
    assert_type(guarded(1), str)
    guarded("x")  # type: ignore[arg-type]


# @main functions never return (NoReturn): each call is checked in a function of its own,
# since mypy does not check code after a call that cannot return.
def check_main_ok() -> NoReturn:
    bare("x", count=2)


def check_main_bad_type() -> None:
    bare(1)  # type: ignore[arg-type]


def check_main_bad_keyword() -> None:
    bare("x", cnt=2)  # type: ignore[call-arg]


def check_main_called_form() -> None:
    called()  # type: ignore[call-arg]


def returns_never() -> NoReturn:
    bare("x")


def cleanups() -> None:
    def close(timeout: float) -> None: ...

    graceful.register(close, 1.0)
    graceful.register(close, "soon")  # type: ignore[arg-type]
    graceful.register_break(close, timeout=1.0)
    graceful.guard().register(close)  # type: ignore[call-arg]
