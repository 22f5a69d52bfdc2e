"""The exec shim that ``graceful.spawn`` runs between fork and the real program.

Run as ``python -I -S launcher.py PPID SIGNAL GROUP ERRFD LIFELINE EXECUTABLE [IGNORED] -- ARGV``,
it needs only the standard library. It resets every signal to its default (except IGNORED, signal
numbers separated by commas that stay ignored: ``graceful run`` passes on what ``nohup`` or a
background shell ignored) and empties the signal mask, leads a new process group if asked, arms
PR_SET_PDEATHSIG (Linux), and then checks that the parent recorded before the fork is still its
parent: a parent that died before prctl() ran sends no signal. Then it execs the program, which
keeps the PID, the process group and the parent-death signal. Doing this in a fresh interpreter
instead of ``preexec_fn`` keeps Python code out of the window between fork and exec, where a parent
with threads can deadlock its child.

An exec failure is written to ERRFD (close-on-exec) as ``errno:message``, so that the one
waiting for it (``graceful run``) can raise it like ``subprocess.Popen`` would; success closes
ERRFD with nothing written. With ERRFD -1 (``spawn``, which does not wait: it looked the program
up before) the failure goes to stderr and the status is 127, as a shell does it. A signal that
arrives before the exec ends the launcher by its default action, as it would end the program
(SIGINT too: the KeyboardInterrupt is not caught).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

try:
    #: The C module under ``signal`` (CPython's ``_signal``): the same constants and calls,
    #: without ``signal``'s enums. ``import signal`` builds them (0.4 ms of ``graceful run``'s
    #: start-up), and its wrappers turn every signal and handler they return into one (the
    #: child's reset of 64 signals before exec took 0.25 ms through them).
    C_SIGNAL: Any = __import__("_signal")
except ImportError:  # not CPython
    C_SIGNAL = __import__("signal")

#: What ``graceful run`` forwards by default (``graceful.spawn(supervise=True)`` passes the same):
#: what a terminal, a service manager or a user sends a program. Here, in the layer below the CLI,
#: so that ``spawn`` need not import ``_cli``.
DEFAULT_FORWARD = ("HUP", "INT", "QUIT", "TERM", "USR1", "USR2", "WINCH")
#: Forwarding these means "stop": they start the countdown to SIGKILL. HUP, USR1, USR2 and WINCH
#: are forwarded only: daemons take HUP and USR1 as "reload" and "reopen logs".
DEFAULT_STOP = ("INT", "QUIT", "TERM")

#: The environment variable that tells ``graceful.die_with_parent`` in the program who its parent
#: is: "PID:PARENT_PID:ARMED_SIGNAL:LIFELINE_FD"; ARMED_SIGNAL is 0 where PR_SET_PDEATHSIG is
#: missing, LIFELINE_FD is -1 when there is none (parsed in ``_parent_death.py``).
ENV = "GRACEFUL_PARENT"
_UNCATCHABLE = tuple(getattr(C_SIGNAL, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(C_SIGNAL, n))


#: libc's prctl(), the C type of its arguments and ctypes' get_errno, once :func:`prepare` (or
#: the first :func:`prctl`) has loaded them (Linux).
_prctl: Any = None


def _load_prctl() -> Any:
    """libc's ``prctl`` through ``_ctypes``, the C half of ctypes: ``import ctypes`` costs 2 ms
    more (it builds every C type it has), most of what ``graceful run`` spends starting that is
    not Python's own. ctypes itself if ``_ctypes`` ever looks different."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "i"

        class _ULong(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "L"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        class _Libc:  # what ctypes.CDLL(None) is to a function pointer: its handle
            _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]

        return _Function(("prctl", _Libc)), _ULong, _ctypes.get_errno  # type: ignore[arg-type]
    except (ImportError, AttributeError, TypeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl, ctypes.c_ulong, ctypes.get_errno


def prepare() -> None:
    """Load what the launcher needs before a fork, for a parent that runs :func:`main` in the
    forked child instead of exec'ing this file (``graceful run``, which has a single thread)."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        _prctl = _load_prctl()


def prctl(option: int, arg: int) -> None:
    """``prctl(option, arg, 0, 0, 0)`` (Linux); OSError if it fails, or elsewhere."""
    prepare()
    if _prctl is None:
        raise OSError(f"prctl() exists only on Linux, not on {sys.platform}")
    function, ulong, get_errno = _prctl
    if function(option, ulong(arg), ulong(0), ulong(0), ulong(0)) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def _parent_death_hidden() -> bool:
    """GRACEFUL_DISABLE hides PR_SET_PDEATHSIG (read as ``graceful._process.features`` reads it)."""
    return "pdeathsig" in os.environ.get("GRACEFUL_DISABLE", "").replace(" ", "").split(",")


def exec_paths(file: str, path: Optional[str] = None) -> list[Any]:
    """Where ``os.execvp`` would look for ``file``, in its order: ``file`` itself if it names a
    directory, else each directory of ``path`` (this process's PATH if None; ``os.defpath``
    without one), as bytes. ``spawn`` checks the same list before it returns."""
    if os.path.dirname(file):
        return [os.fsencode(file)]
    if path is None:
        path = os.environ.get("PATH")
    name = os.fsencode(file)
    return [
        os.path.join(os.fsencode(directory), name)
        for directory in (os.defpath if path is None else path).split(os.pathsep)
    ]


def plan(argv: list[str]) -> tuple[Any, ...]:
    """Everything :func:`run` needs, worked out from the command line beforehand.

    ``graceful run`` calls this before its fork, so that the forked child only makes system
    calls: every object a forked child touches is a page the kernel copies for it.
    """
    ppid, sig, group, lifeline = int(argv[1]), int(argv[2]), argv[3] == "1", int(argv[5])
    executable, args = argv[6], argv[8:]
    ignored: frozenset[int] = frozenset()
    if argv[7] != "--":  # the optional IGNORED field
        ignored = frozenset(int(n) for n in argv[7].split(",") if n.isdigit())
        args = argv[9:]
    c_signal = C_SIGNAL
    resets = [
        (s, c_signal.SIG_IGN if s in ignored else c_signal.SIG_DFL)
        for s in sorted(c_signal.valid_signals())
        if s not in _UNCATCHABLE
    ]
    arm = bool(sig) and sys.platform.startswith("linux") and not _parent_death_hidden()
    if arm:
        prepare()
    return (int(argv[4]), ppid, sig, group, lifeline, resets, arm, exec_paths(executable), args)


def run(steps: tuple[Any, ...]) -> None:
    """Lead a new process group if asked, reset the signals, arm PR_SET_PDEATHSIG, check the
    parent, and exec: only system calls. Raises OSError if the exec fails."""
    errfd, ppid, sig, group, lifeline, resets, arm, paths, args = steps
    if errfd >= 0:
        os.set_inheritable(errfd, False)
    if group and os.getpgid(0) != os.getpid():
        os.setpgid(0, 0)
    c_signal = C_SIGNAL
    for s, handler in resets:
        try:
            c_signal.signal(s, handler)
        except (OSError, ValueError):
            continue  # reserved by the C library
    c_signal.pthread_sigmask(c_signal.SIG_SETMASK, ())
    if sig:
        if arm:
            try:
                prctl(1, sig)  # PR_SET_PDEATHSIG
            except OSError as exc:
                raise OSError(exc.errno, f"prctl(PR_SET_PDEATHSIG): {exc.strerror}") from None
        os.putenv(ENV, f"{os.getpid()}:{ppid}:{sig if arm else 0}:{lifeline}")
        if os.getppid() != ppid:
            # The parent died before prctl() took effect, so the kernel will send nothing: do it.
            os.kill(os.getpid(), sig)
            os._exit(128 + sig)  # the signal's default action does not end a process
    _exec(paths, args)


def _exec(paths: list[Any], args: list[str]) -> None:
    """``os.execvp``'s loop over the paths :func:`exec_paths` found, with its errors (the first
    that is not "not found" wins); without ``os.get_exec_path``, which imports ``warnings``."""
    saved: Optional[OSError] = None
    last: Optional[OSError] = None
    for path in paths:
        try:
            os.execv(path, args)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            if saved is None:
                saved = exc
    raise saved or last or FileNotFoundError(2, os.strerror(2), args[0] if args else "")


def main(argv: list[str], steps: object = None) -> None:
    """Exec the command of ``argv`` (or of ``steps``, its :func:`plan` made before a fork, or
    the exception making it raised); on failure, report why (on ERRFD, or on stderr without
    one) and exit 127."""
    errfd = int(argv[4])
    try:
        if isinstance(steps, BaseException):
            raise steps
        run(plan(argv) if steps is None else steps)  # type: ignore[arg-type]
    except OSError as exc:
        report = f"{exc.errno or 0}:{exc.strerror or exc}"
    except Exception as exc:  # anything else must reach the parent too
        report = f"0:{type(exc).__name__}: {exc}"
    if errfd >= 0:
        os.write(errfd, report.encode("utf-8", "replace"))
    else:
        line = f"graceful.spawn: cannot run {argv[6]!r}: {report.partition(':')[2]}\n"
        os.write(2, line.encode("utf-8", "replace"))
    os._exit(127)


if __name__ == "__main__":
    main(sys.argv)
