"""One stop budget for a whole process tree: ``GRACEFUL_DEADLINE``, read, fitted and passed on.

The variable is one line of ``key=value`` pairs, separated by commas::

    GRACEFUL_DEADLINE=expect=3.5,file=/run/user/1000/graceful-deadline-4242-9f3c01ab
    GRACEFUL_DEADLINE=at=183302.25,less=0.5

- ``at=T``: this process tree must be gone at ``T``, in seconds on ``CLOCK_MONOTONIC``
  (``time.monotonic()`` in Python, ``clock_gettime(CLOCK_MONOTONIC)`` in C): one clock for every
  process of the machine (per boot, never stepped by NTP or by hand). ``CLOCK_REALTIME`` was
  rejected: a clock step during the stop would move every deadline.
- ``file=PATH`` (always last: the path is the rest of the line): where ``T`` appears, as text,
  once the stop has begun. A supervisor starts its command long before it knows when the stop
  will begin, and a process's environment cannot be changed from outside, so ``graceful run
  --grace`` names a file and writes ``T`` into it (write then rename) before it forwards the
  signal; until then the file does not exist and the budget is not running.
- ``less=S``: this process's share ends ``S`` seconds before ``T``: each level of graceful below
  the supervisor adds :data:`LEVEL`, so a backend ends before the program that stops it, which
  ends before the supervisor's SIGKILL.
- ``expect=S``: the seconds this process can expect from its stop signal to ``T`` (what a server
  that reads its stop timeout at start-up, such as gunicorn's ``graceful_timeout``, should be
  given: :func:`budget_remaining` before the stop).

Unknown keys are ignored; a program without graceful ignores the variable. Nothing here is
imported by ``import graceful``, nor by a guard where the variable is not set: the shutdown
machine imports it at a guard's entry (never in a handler) and calls :func:`prepare` then, and
:func:`fit` at the first signal.
"""

from __future__ import annotations

import os
import stat
import time

from . import timeline as _timeline
from .modules import loaded

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

    from .options import Options

ENV = "GRACEFUL_DEADLINE"
#: Each level of graceful below a supervisor ends this much before the one above it.
LEVEL = 0.5
#: A process's own deadline (it ends itself by its signal) comes this long before its parent's
#: SIGKILL: the time to die and be reaped. Backends are SIGKILLed a further ``LEVEL - OWN``
#: earlier (``_process.stopping.DEADLINE_MARGIN``), at the deadline the next level ends by.
OWN = 0.25
#: The most a file holding a deadline may hold: one number.
_MAX_FILE = 64


class Budget:
    """A parsed ``GRACEFUL_DEADLINE``: when this process must be gone, or where to read it."""

    __slots__ = ("at", "expect", "file", "less", "text")

    def __init__(
        self,
        text: str,
        *,
        at: Optional[float] = None,
        file: Optional[str] = None,
        less: float = 0.0,
        expect: Optional[float] = None,
    ) -> None:
        self.text = text
        self.at = at
        self.file = file
        self.less = less
        self.expect = expect

    def end_by(self) -> Optional[float]:
        """When this process must be gone (``time.monotonic()``), or None: the stop has not
        begun (no file yet). Raises ValueError for a file that does not hold a time."""
        at = self.at if self.file is None else read_file(self.file)
        return None if at is None else at - self.less

    def expected(self) -> Optional[float]:
        """Seconds this process can expect from its stop signal to its end, before the stop."""
        return None if self.expect is None else max(0.0, self.expect - self.less)

    def below(self) -> str:
        """The variable for a process this one starts and stops: ``LEVEL`` seconds earlier."""
        parts = []
        if self.expect is not None:
            parts.append(f"expect={self.expect:.6g}")
        if self.at is not None:
            parts.append(f"at={self.at:.6f}")
        parts.append(f"less={self.less + LEVEL:.6g}")
        if self.file is not None:
            parts.append(f"file={self.file}")
        return ",".join(parts)


def _seconds(key: str, value: str, text: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")) or number < 0:  # noqa: PLR0124
        raise ValueError(
            f"{ENV}={text!r}: {key}={value!r} is not a number of seconds >= 0; {_FORMAT}"
        )
    return number


_FORMAT = (
    "expected 'at=SECONDS' (CLOCK_MONOTONIC) or 'file=PATH', with optional 'less=SECONDS' and "
    "'expect=SECONDS' before it, separated by commas (see `graceful docs services`)"
)


def parse(text: str) -> Budget:
    """Read the variable's value; raise ValueError saying what is wrong and what is expected."""
    rest = text.strip()
    fields: dict[str, str] = {}
    while rest:
        word, _, tail = rest.partition(",")
        key, equals, value = word.partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"{ENV}={text!r}: {word!r} is not key=value; {_FORMAT}")
        if key == "file":
            value = rest.partition("=")[2]  # the path is the rest of the line, commas included
            tail = ""
        fields[key] = value.strip() if key != "file" else value
        rest = tail
    if ("at" in fields) == ("file" in fields):
        raise ValueError(f"{ENV}={text!r}: needs exactly one of at= and file=; {_FORMAT}")
    path = fields.get("file")
    if path is not None and not os.path.isabs(path):
        raise ValueError(f"{ENV}={text!r}: file= must be an absolute path, got {path!r}")
    return Budget(
        text,
        at=None if "at" not in fields else _seconds("at", fields["at"], text),
        file=path,
        less=_seconds("less", fields["less"], text) if "less" in fields else 0.0,
        expect=_seconds("expect", fields["expect"], text) if "expect" in fields else None,
    )


def read_file(path: str) -> Optional[float]:
    """The time in a deadline file; None if there is no file yet. Never blocks (a FIFO or a
    device named by mistake is refused, not opened for a blocking read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{ENV}: cannot read {path!r}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{ENV}: {path!r} is not a regular file")
        data = os.read(fd, _MAX_FILE)
    finally:
        os.close(fd)
    try:
        return float(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{ENV}: {path!r} holds {data[:32]!r}, not a time in seconds") from None


def write_file(path: str, at: float) -> None:
    """Publish ``at`` in ``path`` at once for every reader: write a sibling, then rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{at:.6f}\n".encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def new_file_path() -> str:
    """Where a supervisor will publish its deadline: a name nobody else uses, in a directory of
    this user's that is cleared at reboot where there is one."""
    for directory in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm", os.environ.get("TMPDIR")):
        if directory and os.path.isabs(directory) and os.access(directory, os.W_OK | os.X_OK):
            break
    else:
        directory = "/tmp"
    return os.path.join(directory, f"graceful-deadline-{os.getpid()}-{os.urandom(4).hex()}")


# --- this process's budget ------------------------------------------------------------------

#: The variable's value when last parsed, and what it gave (a Budget, or the error's text).
_parsed: tuple[Optional[str], Optional[Budget], Optional[str]] = (None, None, None)


def inherited() -> tuple[Optional[Budget], Optional[str]]:
    """This process's ``GRACEFUL_DEADLINE``, parsed (cached), or the reason it cannot be used."""
    global _parsed
    text = os.environ.get(ENV)
    if not text:
        return None, None
    if _parsed[0] != text:
        try:
            _parsed = (text, parse(text), None)
        except ValueError as exc:
            _parsed = (text, None, str(exc))
    return _parsed[1], _parsed[2]


#: Warnings already given, by what they are about (the variable's value, the options): each
#: once per process, however many guards arm (nested ones, the exit's own guard).
_warned: set[tuple[object, ...]] = set()


def _warn_once(about: tuple[object, ...], message: str, *args: object) -> None:
    if about not in _warned:
        _warned.add(about)
        _timeline.log_warning(message, *args)


def prepare(options: Options) -> None:
    """At a guard's entry (main thread): parse the variable, and warn now about what cannot be
    used, and about an explicit ``timeout=`` that will not fit, rather than in a signal."""
    budget, error = inherited()
    if budget is None and error is None:
        return
    own = "its own timeout" if options.timeout is None else f"its own {options.timeout:g} s"
    about = (os.environ.get(ENV), options.timeout, options.drain, options.budgeted)
    if error is not None:
        _warn_once(about, "graceful: %s; using %s", error, own)
        return
    assert budget is not None
    try:
        end = budget.end_by()
    except ValueError as exc:
        _warn_once(about, "graceful: %s; using %s", exc, own)
        return
    if end is not None and end <= time.monotonic():
        _warn_once(
            about,
            "graceful: %s=%r lies %.3g s in the past; using %s",
            ENV,
            budget.text,
            time.monotonic() - end,
            own,
        )
        return
    expected = budget.expected() if end is None else end - time.monotonic()
    if options.budgeted or expected is None or (options.timeout is None and not options.drain):
        return
    need = options.drain + (options.timeout if options.timeout is not None else float("inf"))
    if need > expected - OWN:
        _warn_once(
            about,
            "graceful: an explicit timeout=%g (drain=%g) does not fit the %.3g s the budget "
            "above leaves (%s): the layer above will SIGKILL this program first; leave timeout "
            "at its default to fit it",
            options.timeout,
            options.drain,
            expected,
            ENV,
        )


def fit(now: float, options: Options) -> Optional[tuple[float, float]]:
    """At the first signal: ``(drain, deadline)`` fitted inside the inherited budget, or None
    (no budget, an explicit ``timeout=``, or a budget that cannot be used: the own defaults).

    The deadline is the budget's end less :data:`OWN`; the drain gets at most half of what is
    left, so that the cleanups keep the other half. Runs in the signal path: one non-blocking
    read of a small file at most, nothing logged."""
    if not options.budgeted:
        return None
    budget, _ = inherited()
    if budget is None:
        return None
    try:
        end = budget.end_by()
    except ValueError as exc:
        _unused(str(exc))
        return None
    if end is None:
        return None  # the file is not there: this stop did not come from the budget's owner
    deadline = end - OWN
    if deadline <= now:
        _unused(f"{ENV}={budget.text!r}: the deadline passed {now - deadline:.3g} s ago")
        return None
    return min(options.drain, (deadline - now) / 2), deadline


def _unused(reason: str) -> None:
    """On the timeline (queued: the signal path logs nothing): the own timeout applies."""
    _timeline.record("budget", f"budget not used: {reason}", defer=True, refused=reason)


def record(now: float, fitted: tuple[float, float]) -> None:
    """The budget on the shutdown's timeline (queued: this runs in the signal path)."""
    drain, end = fitted
    budget, _ = inherited()
    _timeline.record(
        "budget",
        f"budget from {ENV}: drain {drain:g} s, deadline in {end - now:.3f} s",
        defer=True,
        drain=round(drain, 6),
        deadline_in=round(end - now, 6),
        source=None if budget is None else budget.text,
    )


# --- public -------------------------------------------------------------------------------------


def deadline() -> Optional[float]:
    """When this process must be gone (``time.monotonic()``), by the budget inherited in
    ``GRACEFUL_DEADLINE``, or by the shutdown in progress; None when neither is known (no budget
    above, or its stop has not begun)."""
    machine = loaded("graceful._core.machine")
    armed = None if machine is None else machine.machine.deadline
    if armed is not None:
        return float(armed)
    budget, _ = inherited()
    if budget is None:
        return None
    try:
        end = budget.end_by()
    except ValueError:
        return None
    return None if end is None else end - OWN


def budget_remaining(default: Optional[float] = None) -> Optional[float]:
    """Seconds this process has to end in, for a server's own stop timeout.

    During the stop: the time left to this process's deadline (at least 0). Before it: what the
    budget above promises from the stop signal on (``expect=`` in ``GRACEFUL_DEADLINE``, less
    each level's share), which is what ``gunicorn``'s ``graceful_timeout``, uvicorn's
    ``timeout_graceful_shutdown`` and celery's soft shutdown timeout should be set to at start.
    ``default`` when there is no budget above (or it cannot be used)."""
    end = deadline()
    if end is not None:
        return max(0.0, end - time.monotonic())
    budget, _ = inherited()
    expected = None if budget is None else budget.expected()
    return default if expected is None else max(0.0, expected - OWN)


def pass_down(popen_kwargs: dict[str, Any]) -> None:
    """Give a backend that this process will stop the budget, a level down (``env=`` of
    ``Popen``, made from ``os.environ`` if not given). A variable the caller set is kept; one
    that cannot be used here (warned about at the guard's entry) is not passed on: a supervised
    backend's ``graceful run`` would refuse to start with it."""
    budget, error = inherited()
    if budget is None and error is None:
        return
    env = popen_kwargs.get("env")
    if env is not None and (ENV in env or ENV.encode() in env):
        return
    env = dict(os.environ if env is None else env)
    if budget is None:
        env.pop(ENV, None)
    else:
        env[ENV] = budget.below()
    popen_kwargs["env"] = env
