"""How a guard wants a shutdown to go: one typed, frozen, validated options object.

``guard()``, ``@main`` and the asyncio entry points all build an :class:`Options` through
:meth:`Options.parse`, so each option is checked once, with an error worded for the function the
user called. A hand-written frozen class rather than a ``dataclass``: ``import dataclasses`` costs
more than all of ``import graceful`` may (it pulls in ``inspect``).
"""

from __future__ import annotations

from . import signals as _signals
from .checks import check_bool, check_drain, check_timeout

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

if TYPE_CHECKING:
    from typing import Literal

    OnSignal = Literal["reraise", "exit", "raise"]
    OnSecondSignal = Literal["force", "ignore"]

ON_SIGNAL = ("reraise", "exit", "raise")
ON_SECOND_SIGNAL = ("force", "ignore")

#: ``docker stop`` sends SIGKILL 10 s after SIGTERM: end well before that.
DEFAULT_TIMEOUT = 5.0


class Options:
    """The outermost guard's policy for a shutdown. Immutable; compare and hash by value."""

    __slots__ = (
        "budgeted",
        "drain",
        "exit_code",
        "on_second_signal",
        "on_signal",
        "override_ignored",
        "signums",
        "timeout",
    )
    #: The fields, in the order of the repr.
    _FIELDS = (
        "drain",
        "exit_code",
        "on_second_signal",
        "on_signal",
        "override_ignored",
        "signals",
        "timeout",
    )

    #: The signals as numbers: what graceful itself uses (``signals`` imports ``signal``).
    signums: tuple[int, ...]
    #: Seconds from the shutdown proper (after the drain) to a forced end; None: no deadline.
    timeout: Optional[float]
    on_signal: OnSignal
    exit_code: Optional[int]
    on_second_signal: OnSecondSignal
    override_ignored: bool
    #: Seconds the program keeps running after the first signal, with ``graceful.draining`` set.
    drain: float
    #: ``timeout`` was left at its default: a budget inherited from above (``GRACEFUL_DEADLINE``,
    #: ``_core.budget``) decides the deadline and caps the drain instead.
    budgeted: bool

    def __init__(
        self,
        signals: tuple[int, ...] = _signals.DEFAULT_SIGNALS,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        on_signal: OnSignal = "reraise",
        exit_code: Optional[int] = None,
        on_second_signal: OnSecondSignal = "force",
        override_ignored: bool = False,
        drain: float = 0.0,
        budgeted: bool = False,
    ) -> None:
        """Store already-checked values; use :meth:`parse` for what a user passed."""
        values = {
            "signums": tuple(int(s) for s in signals),
            "timeout": timeout,
            "on_signal": on_signal,
            "exit_code": exit_code,
            "on_second_signal": on_second_signal,
            "override_ignored": override_ignored,
            "drain": drain,
            "budgeted": budgeted,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @classmethod
    def parse(
        cls,
        signals: object = (),
        *,
        what: str,
        timeout: object = DEFAULT_TIMEOUT,
        on_signal: object = "reraise",
        exit_code: object = None,
        on_second_signal: object = "force",
        override_ignored: object = False,
        drain: object = 0.0,
    ) -> Options:
        """Check everything a user passed to ``what`` (e.g. ``"graceful.guard()"``)."""
        sigs = _signals.resolve_all(signals, what)
        checked_timeout = check_timeout(timeout, what)  # type: ignore[arg-type]
        if on_signal not in ON_SIGNAL:
            raise ValueError(f"{what}: on_signal must be one of {ON_SIGNAL}, got {on_signal!r}")
        if on_second_signal not in ON_SECOND_SIGNAL:
            raise ValueError(
                f"{what}: on_second_signal must be one of {ON_SECOND_SIGNAL}, "
                f"got {on_second_signal!r}"
            )
        if exit_code is not None:
            if isinstance(exit_code, bool) or not isinstance(exit_code, int):
                raise TypeError(
                    f"{what}: exit_code must be an int or None, got {type(exit_code).__name__}"
                )
            if not 0 <= exit_code <= 255:
                raise ValueError(f"{what}: exit_code must be between 0 and 255, got {exit_code}")
            if on_signal != "exit":
                raise ValueError(
                    f"{what}: exit_code applies only with on_signal='exit' (got "
                    f"on_signal={on_signal!r}); pass on_signal='exit' too, or drop exit_code"
                )
        checked_drain = check_drain(drain, what)
        return cls(
            sigs,
            timeout=checked_timeout,
            on_signal=on_signal,  # type: ignore[arg-type]
            exit_code=exit_code,
            on_second_signal=on_second_signal,  # type: ignore[arg-type]
            override_ignored=check_bool(override_ignored, what, "override_ignored"),
            drain=checked_drain,
            budgeted=timeout is DEFAULT_TIMEOUT,  # the object itself: left at its default
        )

    @property
    def signals(self) -> tuple[int, ...]:
        """The signals, as ``signal.Signals`` (ints for realtime ones), in the order given."""
        return tuple(_signals.as_signal(s) for s in self.signums)

    def exit_status(self, sig: int) -> int:
        """The exit status when the process exits instead of dying by ``sig``: the rule, once."""
        return self.exit_code if self.exit_code is not None else 128 + sig

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self.__slots__)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"graceful options are frozen: cannot set {key!r}")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"graceful options are frozen: cannot delete {key!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        parts = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._FIELDS)
        return f"Options({parts})"


DEFAULT = Options(budgeted=True)
