"""What ``graceful run`` is asked to do, checked once, before anything is started.

Parsing lives here rather than in the argparse set-up so that ``graceful.spawn(supervise=True)``
can build the same command line from numbers and the supervisor can be tested without a shell.
"""

from __future__ import annotations

import _thread
import os

from .._process import launcher as _launcher
from .._process.launcher import C_SIGNAL as _signal

TYPE_CHECKING = False  # typing costs the supervisor's start-up time; annotations are strings here
if TYPE_CHECKING:
    from typing import Optional

#: The signals forwarded, and those that mean "stop", by default: the launcher's
#: (``spawn(supervise=True)`` passes them too, and ``_process`` may not import ``_cli``).
DEFAULT_FORWARD = _launcher.DEFAULT_FORWARD
DEFAULT_STOP = _launcher.DEFAULT_STOP

#: Below docker's 10 s, so the children are SIGKILLed by us, and reaped, before docker kills us.
DEFAULT_TIMEOUT = 8.0
#: After the parent died (``--die-with-parent``): nobody waits for a slow ending any more.
DEFAULT_ORPHAN_TIMEOUT = 0.5
#: With ``--grace``: the tree is SIGKILLed this long before the grace ends, so that it is reaped,
#: and the receipt written, before the orchestrator's own SIGKILL.
DEFAULT_MARGIN = 0.5

#: The supervisor's own parent-death signal: one nobody else sends, so a parent *thread* that
#: exits (PR_SET_PDEATHSIG fires then too) is told apart from a parent that died. Linux only.
PDEATH_SIGNAL: int = getattr(_signal, "SIGRTMAX", 0)

_FAULTS = tuple(
    getattr(_signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(_signal, n)
)


class Options:
    """Everything the supervisor needs; see ``graceful run --help`` for each option.

    A plain class rather than a ``NamedTuple``: ``typing`` alone would cost the supervisor's
    start-up 2.5 ms."""

    __slots__ = (
        "command",
        "die_with_parent",
        "drain",
        "executable",
        "forward",
        "grace",
        "group",
        "margin",
        "orphan_timeout",
        "own_group",
        "parent_pid",
        "quiet",
        "ready_file",
        "remap",
        "report",
        "report_fd",
        "stop",
        "subreaper",
        "timeout",
        "verbose",
    )

    def __init__(
        self,
        command: list[str],
        *,
        executable: Optional[str] = None,
        forward: frozenset[int] = frozenset(),
        stop: frozenset[int] = frozenset(),
        remap: Optional[dict[int, int]] = None,
        group: bool = False,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        orphan_timeout: Optional[float] = DEFAULT_ORPHAN_TIMEOUT,
        subreaper: bool = True,
        die_with_parent: bool = False,
        parent_pid: Optional[int] = None,
        report_fd: Optional[int] = None,
        own_group: bool = False,
        verbose: int = 0,
        quiet: bool = False,
        grace: Optional[float] = None,
        drain: float = 0.0,
        margin: float = DEFAULT_MARGIN,
        report: Optional[str] = None,
        ready_file: Optional[str] = None,
    ) -> None:
        self.command = command
        self.executable = executable
        self.forward = forward
        self.stop = stop
        self.remap: dict[int, int] = {} if remap is None else remap
        self.group = group
        self.timeout = timeout
        self.orphan_timeout = orphan_timeout
        self.subreaper = subreaper
        self.die_with_parent = die_with_parent
        self.parent_pid = parent_pid
        self.report_fd = report_fd
        self.own_group = own_group
        self.verbose = verbose
        self.quiet = quiet
        #: The whole stop budget from the first stop signal (``--grace``), the part of it spent
        #: draining before the signal is forwarded, and what is kept for the SIGKILL and reaping.
        self.grace = grace
        self.drain = drain
        self.margin = margin
        self.report = report
        self.ready_file = ready_file

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Options):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment] # mutable fields (command, remap)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Options({fields})"


def parse_signal(text: str, what: str) -> int:
    """A signal of this platform from ``TERM``, ``SIGTERM``, ``15`` or ``RTMIN+3``."""
    from .._core import signals as _signals

    text = text.strip()
    if text.isdigit():
        return _signals.number(int(text), what)
    return _signals.number(text, what)


def parse_forwardable(text: str, what: str) -> int:
    """A signal the supervisor can catch and pass on (not KILL, STOP, CHLD or a fault)."""
    from .._core import signals as _signals

    sig = parse_signal(text, what)
    name = _signals.name(sig)
    if sig in (_signal.SIGKILL, _signal.SIGSTOP):
        raise ValueError(
            f"{what}: {name} cannot be caught, so the supervisor never sees it to forward it; "
            "send it to the command's process directly"
        )
    if sig == _signal.SIGCHLD:
        raise ValueError(
            f"{what}: the supervisor needs SIGCHLD itself, to reap; it cannot be forwarded"
        )
    if sig in _FAULTS:
        raise ValueError(
            f"{what}: {name} reports a fault in the process that gets it; the supervisor leaves "
            "it unblocked so that its own crash is not hidden, and never forwards it"
        )
    return sig


def parse_signal_list(text: str, what: str) -> frozenset[int]:
    """``HUP,INT,TERM`` (commas or spaces); an empty string is the empty set."""
    words = [w for w in text.replace(",", " ").split() if w]
    return frozenset(parse_forwardable(w, what) for w in words)


def parse_map(text: str, what: str = "--map") -> tuple[int, int]:
    """``TERM:QUIT``: the supervisor sends QUIT when it receives TERM."""
    src, sep, dst = text.partition(":")
    if not sep or not src.strip() or not dst.strip():
        raise ValueError(f"{what}: expected FROM:TO such as TERM:QUIT, got {text!r}")
    return parse_forwardable(src, what), parse_signal(dst, what)


_TIMEOUT_MAX = _thread.TIMEOUT_MAX


def parse_timeout(text: str, what: str) -> Optional[float]:
    """Seconds >= 0, or ``none`` (``never``) for no limit: the rule of ``guard(timeout=)``, so
    ``inf`` is refused as it is there (no limit has one spelling)."""
    if text.strip().lower() in ("none", "never"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{what}: expected seconds such as 8 or 0.5, or 'none', got {text!r}"
        ) from None
    if 0 <= value <= _TIMEOUT_MAX:
        return value
    from .._core.checks import check_timeout  # the refusal, worded once (costs start-up time)

    return check_timeout(value, what, "seconds", none="'none'")


def parse_seconds(text: str, what: str) -> float:
    """Seconds >= 0, finite (a budget has an end): no 'none' here."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: expected seconds such as 6 or 0.5, got {text!r}") from None
    if not value >= 0:  # negative, or NaN
        raise ValueError(f"{what}: seconds must be >= 0, got {text!r}")
    if value > _TIMEOUT_MAX:  # infinity too
        raise ValueError(f"{what}: a budget is a finite number of seconds, got {text!r}")
    return value


def parse_path(text: str, what: str) -> str:
    """A file name; ``-`` would read as an option, and an empty one names nothing."""
    if not text.strip():
        raise ValueError(f"{what}: expected a file name, got {text!r}")
    return text


def _check_budget(rest: dict[str, object]) -> None:
    """Refuse, at start, a budget that cannot hold: what to write instead, not a hang later."""
    grace = rest.get("grace")
    drain = rest.get("drain", 0.0)
    margin = rest.get("margin", DEFAULT_MARGIN)
    assert isinstance(drain, float)
    assert isinstance(margin, float)
    if grace is not None:
        assert isinstance(grace, float)
        if "timeout" in rest and rest["timeout"] is not DEFAULT_TIMEOUT:
            raise ValueError(
                "--grace and --timeout: give one; --grace is the whole budget from the first "
                "stop signal (drain and SIGKILL included), --timeout only the time after it is "
                "forwarded"
            )
        if grace <= margin:
            raise ValueError(
                f"--grace {grace:g} is not longer than the margin ({margin:g} s, --margin) kept "
                "for the SIGKILL and reaping: nothing would be left for the command; give a "
                "longer --grace or a shorter --margin"
            )
        if drain >= grace - margin:
            raise ValueError(
                f"--drain {drain:g} leaves nothing of --grace {grace:g} (less the {margin:g} s "
                "margin) for the command to stop in; give a shorter --drain or a longer --grace"
            )
        rest["timeout"] = grace - margin - drain  # after the forward, until the SIGKILL
    from .._core import budget as _budget

    if os.environ.get(_budget.ENV):
        inherited, error = _budget.inherited()
        if error is not None:
            raise ValueError(f"{error}; fix or unset it")
        assert inherited is not None
        end = inherited.end_by()  # ValueError for a file that does not hold a time
        import time

        if end is not None and end <= time.monotonic() + margin:
            raise ValueError(
                f"{_budget.ENV}={inherited.text!r} lies in the past (or within the "
                f"{margin:g} s margin): the layer above has already given up on this command; "
                "unset it, or start the command before the stop"
            )


def _defaults(names: tuple[str, ...]) -> Optional[frozenset[int]]:
    """A default list as :func:`parse_signal_list` reads it, looked up by name: parsing imports
    ``_core.signals`` and with it ``signal``, which builds its enums (0.5 ms of start-up). None
    if this platform lacks one of the signals, or refuses it: parsing then says why."""
    valid = _signal.valid_signals()
    refused = (_signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD, *_FAULTS)
    numbers = [getattr(_signal, f"SIG{name}", 0) for name in names]
    if not all(n in valid and n not in refused for n in numbers):
        return None
    return frozenset(numbers)


def build(
    command: list[str],
    *,
    signals: Optional[str] = None,
    stop_signals: Optional[str] = None,
    maps: tuple[str, ...] = (),
    **rest: object,
) -> Options:
    """Options from command-line strings; raise ValueError saying what to write instead."""
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError("graceful run: no command given; usage: graceful run [options] -- COMMAND")
    forward = _defaults(DEFAULT_FORWARD) if signals is None else None
    if forward is None:
        forward = parse_signal_list(
            " ".join(DEFAULT_FORWARD) if signals is None else signals, "--signals"
        )
    stop = _defaults(DEFAULT_STOP) if stop_signals is None else None
    if stop is None:
        stop = parse_signal_list(
            " ".join(DEFAULT_STOP) if stop_signals is None else stop_signals, "--stop-signals"
        )
    remap = dict(parse_map(m) for m in maps)
    forward = forward | frozenset(remap)  # a mapped signal is forwarded, rewritten
    if rest.get("grace") is not None or rest.get("drain") or "GRACEFUL_DEADLINE" in os.environ:
        _check_budget(rest)
    if rest.get("die_with_parent") and PDEATH_SIGNAL in forward:
        from .._core import signals as _signals

        raise ValueError(
            f"--signals: {_signals.name(PDEATH_SIGNAL)} is how the kernel tells the supervisor "
            "that its parent died (--die-with-parent); forward another realtime signal"
        )
    return Options(command=command, forward=forward, stop=stop, remap=remap, **rest)  # type: ignore[arg-type]
