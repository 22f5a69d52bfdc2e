"""What a signal is: its names, its default action, who sends it, and whether a guard may handle it.

The one place that turns what a user wrote (``"TERM"``, ``"sigterm"``, ``15``, ``"RTMIN+3"``,
``signal.SIGTERM``) into a signal number, or into an error that says what to write instead. The
``graceful signals`` command prints the same facts as a table.

Signals are plain ints here, named from ``_signal`` (the C module): ``import signal`` builds its
``Signals``, ``Handlers`` and ``Sigmasks`` enums, which with ``enum``, ``functools`` and
``collections`` cost an idle guarded process most of a megabyte of RSS (issue 16). What a user
reads (``Signalled.signal``, a guard's ``signals``) is still a ``signal.Signals``, made when read
(:func:`as_signal`).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import sys

TYPE_CHECKING = False  # typing costs import time; annotations are strings here


if TYPE_CHECKING:
    import signal
    from typing import Literal, Union

    from typing_extensions import TypeAlias

    SignalLike: TypeAlias = Union[signal.Signals, int, str]
    Action = Literal["terminate", "core", "ignore", "stop", "continue"]

#: Where a user reads more; ``graceful signals`` prints this platform's table.
DOCS = "`graceful docs signals` and the table `graceful signals`"

#: Every name ``signal.Signals`` has a member for (aliases such as SIGIOT too), and its number:
#: the names ``signal`` takes from ``_signal`` for its enum.
_BY_NAME: dict[str, int] = {
    key: value
    for key, value in vars(_signal).items()
    if (key.isupper() and key.startswith("SIG") and not key.startswith("SIG_"))
    or key.startswith("CTRL_")
}
#: A number's name, as ``signal.Signals(n).name``: of several names, the first in sorted order
#: (SIGABRT, not SIGIOT), as the enum's canonical member is.
_BY_NUMBER: dict[int, str] = {}
for _key, _value in sorted(_BY_NAME.items(), key=lambda item: (item[1], item[0])):
    _BY_NUMBER.setdefault(_value, _key)
del _key, _value

#: Handled when a guard names no signals: those of HUP, INT, QUIT, TERM the platform has.
DEFAULT_SIGNALS: tuple[int, ...] = tuple(
    _BY_NAME[name] for name in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM") if name in _BY_NAME
)

#: Default action (signal(7)) and who typically sends it, by name; where a platform differs it is
#: patched below. Names this platform lacks are simply never looked up.
FACTS: dict[str, tuple[Action, str]] = {
    "SIGHUP": (
        "terminate",
        "a closed terminal or SSH session; daemons: 'reload'",
    ),
    "SIGINT": ("terminate", "Ctrl-C in a terminal, to the whole foreground process group"),
    "SIGQUIT": ("core", "Ctrl-\\ in a terminal; nginx: 'stop gracefully' (TERM: 'stop now')"),
    "SIGILL": ("core", "the CPU: an illegal instruction in this process"),
    "SIGTRAP": ("core", "a debugger or a breakpoint instruction"),
    "SIGABRT": ("core", "abort(3) in this process (a failed C assertion)"),
    "SIGBUS": ("core", "the kernel: a bad memory access (a truncated mmap'ed file)"),
    "SIGFPE": ("core", "the CPU: an arithmetic fault in this process"),
    "SIGKILL": (
        "terminate",
        "kill -9; docker, systemd, Kubernetes after their timeout",
    ),
    "SIGUSR1": ("terminate", "users and programs, by agreement (log rotation, status dump)"),
    "SIGSEGV": ("core", "the kernel: an invalid memory reference in this process"),
    "SIGUSR2": ("terminate", "users and programs, by agreement (gunicorn: upgrade)"),
    "SIGPIPE": (
        "terminate",
        "the kernel: a write to a pipe nobody reads (Python ignores it)",
    ),
    "SIGALRM": ("terminate", "alarm(2) and setitimer(ITIMER_REAL) in this process"),
    "SIGTERM": ("terminate", "kill, docker stop, systemd, Kubernetes, supervisors: 'please stop'"),
    "SIGSTKFLT": ("terminate", "nobody (unused on Linux)"),
    "SIGCHLD": ("ignore", "the kernel: a child of this process stopped or ended"),
    "SIGCONT": ("continue", "fg, bg, kill -CONT: resume a stopped process"),
    "SIGSTOP": ("stop", "kill -STOP, debuggers: stop, cannot be caught"),
    "SIGTSTP": ("stop", "Ctrl-Z in a terminal"),
    "SIGTTIN": ("stop", "the terminal: a background process read from it"),
    "SIGTTOU": ("stop", "the terminal: a background process wrote to it (with tostop)"),
    "SIGURG": ("ignore", "the kernel: out-of-band data on a socket"),
    "SIGXCPU": (
        "core",
        "the kernel: the CPU time limit (RLIMIT_CPU) passed",
    ),
    "SIGXFSZ": ("core", "the kernel: the file size limit (RLIMIT_FSIZE) passed"),
    "SIGVTALRM": ("terminate", "setitimer(ITIMER_VIRTUAL) in this process"),
    "SIGPROF": ("terminate", "setitimer(ITIMER_PROF), profilers"),
    "SIGWINCH": ("ignore", "the terminal: its window changed size"),
    "SIGIO": ("terminate", "the kernel: I/O possible on an O_ASYNC descriptor"),
    "SIGPWR": ("terminate", "a UPS daemon: power failure; some init systems: shut down"),
    "SIGSYS": ("core", "the kernel: a bad system call, seccomp"),
    "SIGEMT": ("core", "the CPU: an emulator trap"),
    "SIGINFO": ("ignore", "Ctrl-T in a BSD/macOS terminal: print status"),
}
if sys.platform != "linux":  # BSD and macOS: SIGIO is ignored by default
    FACTS["SIGIO"] = ("ignore", FACTS["SIGIO"][1])

_UNCATCHABLE = frozenset(_BY_NAME[n] for n in ("SIGKILL", "SIGSTOP") if n in _BY_NAME)
#: Raised by the faulting instruction itself: a handler that returns makes it run again.
_FAULTS = frozenset(_BY_NAME[n] for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if n in _BY_NAME)
_RTMIN: int = _BY_NAME.get("SIGRTMIN", 0)
_RTMAX: int = _BY_NAME.get("SIGRTMAX", -1)
#: Linux signals that Python < 3.11 has no ``signal.Signals`` member for.
_UNNAMED: dict[int, str] = {16: "SIGSTKFLT"} if sys.platform == "linux" else {}


def is_realtime(signum: int) -> bool:
    return _RTMIN <= signum <= _RTMAX


def name(signum: int) -> str:
    """``SIGTERM``; realtime signals as ``SIGRTMIN+3``; unknown numbers as ``signal 99``."""
    known = _BY_NUMBER.get(signum)
    if known is not None:
        return known
    if signum in _UNNAMED:
        return _UNNAMED[signum]
    if is_realtime(signum):
        return f"SIGRTMIN+{signum - _RTMIN}"
    return f"signal {signum}"


def default_action(signum: int) -> Action:
    """What the kernel does with the signal when nobody handles it (realtime: terminate)."""
    if is_realtime(signum):
        return "terminate"
    return FACTS.get(name(signum), ("terminate", ""))[0]


def sender(signum: int) -> str:
    """Who typically sends it."""
    if is_realtime(signum):
        return "applications, by agreement (realtime signals queue)"
    return FACTS.get(name(signum), ("terminate", "unknown"))[1]


def refusal(signum: int) -> str | None:
    """Why a guard must not handle this signal, or None if it may."""
    sig = name(signum)
    if signum in _UNCATCHABLE:
        return (
            f"{sig} cannot be caught, blocked or ignored, so no cleanup can run on it; for what "
            "survives it (transactions, idempotent start-up recovery, children that watch for "
            f"their parent's death) see {DOCS}"
        )
    if signum in _FAULTS:
        return (
            f"{sig} reports a fault in the running code and is not safe to handle in Python (the "
            "faulting instruction runs again when a handler returns); call faulthandler.enable() "
            f"for a traceback, and let a parent or supervisor clean up (see {DOCS})"
        )
    action = default_action(signum)
    if action in ("ignore", "stop", "continue"):
        what = {"ignore": "is ignored", "stop": "stops", "continue": "continues"}[action]
        return (
            f"{sig} does not end a process (by default it {what}; it comes from "
            f"{sender(signum)}), so treating it as a request to stop would end programs that "
            "were never asked to; handle it with signal.signal() for its own purpose"
        )
    return None


def what_graceful_does(signum: int) -> str:
    """The ``graceful signals`` column: handled by default, may be named, or refused (and why)."""
    if signum in DEFAULT_SIGNALS:
        return "handled by every guard (a default signal)"
    why = refusal(signum)
    if why is None:
        return "handled when named: guard('" + name(signum)[3:] + "')"
    if signum in _UNCATCHABLE:
        return "refused: cannot be caught"
    if signum in _FAULTS:
        return "refused: a fault in the running code"
    return "refused: does not end a process"


def _parse_name(text: str, what: str) -> int:
    raw = text.strip().upper()
    key = raw if raw.startswith("SIG") else "SIG" + raw
    for base, value in (("SIGRTMIN", _RTMIN), ("SIGRTMAX", _RTMAX)):
        if key.startswith(base) and key != base and _RTMIN:
            offset = key[len(base) :].replace(" ", "")
            if offset[:1] in "+-" and offset[1:].isdigit():
                return value + int(offset)
    for signum, known in _UNNAMED.items():
        if key == known:
            return signum
    if key.startswith("SIG_") or key not in _BY_NAME:
        names = sorted(n[3:] for n in _BY_NAME if not n.startswith("SIG_"))
        raise ValueError(
            f"{what}: unknown signal name {text!r}; use a name such as 'TERM', 'SIGTERM' or "
            f"'USR1' (this platform has: {', '.join(names)}; realtime ones as 'RTMIN+3')"
        )
    return _BY_NAME[key]


def number(sig: object, what: str) -> int:
    """A real signal of this platform as its number (any signal, catchable or not), or raise."""
    if isinstance(sig, bool) or not isinstance(sig, (int, str)):
        raise TypeError(
            f"{what}: a signal is a signal.Signals, an int or a name such as 'TERM', "
            f"got {type(sig).__name__} {sig!r}"
        )
    signum = _parse_name(sig, what) if isinstance(sig, str) else int(sig)
    if signum == 0 and not isinstance(sig, str):
        raise ValueError(
            f"{what}: signal 0 only probes whether a process exists and stops nothing; "
            "pass a real signal such as signal.SIGTERM"
        )
    if signum not in _signal.valid_signals():
        raise ValueError(
            f"{what}: {sig!r} is not a signal on this platform; use signal.SIGTERM or a name "
            f"such as 'TERM' (see {DOCS})"
        )
    return signum


def as_signal(signum: int) -> int:
    """``signal.Signals`` when the number has a member (for readable reprs), else the int.

    For what a user reads; this imports ``signal``, so graceful itself keeps the ints."""
    import signal

    try:
        return signal.Signals(signum)
    except ValueError:
        return signum


def resolve(sig: SignalLike, what: str) -> int:
    """A signal that a guard may handle, as its number."""
    signum = number(sig, what)
    why = refusal(signum)
    if why is not None:
        raise ValueError(f"{what}: {why}")
    return signum


def resolve_all(signals: object, what: str) -> tuple[int, ...]:
    """Resolve and de-duplicate, keeping order; nothing means the defaults. A single signal
    (``"TERM"``, ``15``) is accepted where a sequence is expected, so ``signals="TERM"`` is TERM,
    not the letters T, E, R, M."""
    if isinstance(signals, (str, int)):
        signals = (signals,)
    try:
        items: tuple[object, ...] = tuple(signals)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{what}: signals must be a signal or a sequence of signals such as ('TERM', 'INT'), "
            f"got {type(signals).__name__} {signals!r}"
        ) from None
    if not items:
        return DEFAULT_SIGNALS
    seen: dict[int, None] = {}
    for sig in items:
        seen[resolve(sig, what)] = None  # type: ignore[arg-type]
    return tuple(seen)
