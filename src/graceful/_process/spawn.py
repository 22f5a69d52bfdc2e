"""``graceful.spawn``: ``subprocess.Popen`` + ``track`` + parent-death protection.

The child first runs a launcher, which sets up what must happen between fork and exec (default
signals, empty mask, process group, PR_SET_PDEATHSIG, the check that the parent is still alive)
and then execs the program: util-linux ``setpriv`` and ``/bin/sh`` where they keep every
guarantee (``native_launch.py``: three execs, no interpreter), else ``launcher.py`` in a fresh
interpreter. No ``preexec_fn``: Python code between fork and exec can deadlock when the parent
has threads.

``spawn`` does not wait for the launcher (a second interpreter start is 20 to 60 times a
``Popen``): it returns as soon as ``Popen`` does, and stays race-free where it matters. The
program is looked up first, as ``execvp`` in the child will (``env``'s PATH, ``cwd``), so a
missing or non-executable program raises ``FileNotFoundError``/``PermissionError`` at the call as
with ``Popen``; an exec that fails anyway (the file changed meanwhile, a bad binary) ends the child
with status 127 and the reason on its stderr, as a shell does. The process group exists when
``spawn`` returns: ``Popen(process_group=0)`` makes it before the exec (before 3.11, where Popen
cannot, ``spawn`` waits for the launcher to make it). The parent-death
signal is armed by the launcher moments later, and a parent that dies before that is still seen
(the launcher compares ``getppid()`` with the recorded parent), so no death goes unnoticed.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits. So a caller that is not
the main thread forks through one helper thread that lives as long as the process.

With ``supervise=True`` the child is ``graceful run`` (``graceful/_cli/run.py``), which starts the
program through the same launcher and stays as its parent: when this process dies, even by
SIGKILL, the supervisor hears it (a catchable parent-death signal) and stops the program, its
process group and everything it adopted, SIGKILL included, within ``ORPHAN_TIMEOUT``.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module, as in _core: no enums
import errno
import os
import select
import sys
import threading
import time

from .._core import budget as _budget
from .._core import dispositions as _dispositions
from .._core import signals as _signals
from .._core.checks import check_signal, check_timeout
from .._core.protect import not_interruptible
from . import launcher as _launcher
from . import native_launch as _native
from . import parent_death as _parent_death
from . import pidfd as _pidfd
from .backends import track

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Callable, Optional, TypeVar

    from .._core.signals import SignalLike

    _T = TypeVar("_T")

#: How long spawn waits for the launcher to exec the program (a loaded machine is slow).
LAUNCH_TIMEOUT = 30.0
_LAUNCHER = os.path.abspath(_launcher.__file__)
#: The supervisor, run by path (see ``graceful/_cli/standalone.py``).
_SUPERVISOR = os.path.join(os.path.dirname(os.path.dirname(_LAUNCHER)), "_cli", "standalone.py")
#: The supervisor SIGKILLs at ``timeout``; we give it this long more before SIGKILLing it.
SUPERVISOR_MARGIN = 1.0
#: What the supervisor writes on the report pipe once the program runs.
_READY = "ready"
#: A supervised program outlives its parent's SIGKILL by this long (then SIGKILL): short, so that
#: everything is gone within a second even on a loaded machine.
ORPHAN_TIMEOUT = 0.3


@not_interruptible  # the shutdown's signal waits until the child is tracked (microseconds)
def spawn(
    args: Any,
    *,
    die_with_parent: bool = True,
    signal: SignalLike = _signal.SIGTERM,
    timeout: Optional[float] = 5.0,
    group: bool = False,
    supervise: bool = False,
    **popen_kwargs: Any,
) -> subprocess.Popen[Any]:
    """Start a backend that is stopped when this program ends and dies when it dies.

    ``args`` and ``popen_kwargs`` are those of ``subprocess.Popen``. The child starts with default
    signal dispositions and an empty signal mask. With ``die_with_parent`` it gets ``signal``
    when this process dies, even by SIGKILL (Linux). With ``group`` it leads a new process group,
    and its whole group gets the signals. It is tracked: see ``graceful.track``.

    With ``supervise`` (Linux) it runs under ``graceful run``, and the returned Popen is the
    supervisor's: when this process is SIGKILLed, the backend is SIGKILLed too if it ignores
    ``signal``, and so is everything it started (its group, its daemons), within a second.
    """
    sig = check_signal(signal, "graceful.spawn()")
    check_timeout(timeout, "graceful.spawn()")
    for name, value in (
        ("die_with_parent", die_with_parent),
        ("group", group),
        ("supervise", supervise),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"graceful.spawn(): {name} must be True or False, got {value!r}")
    if "preexec_fn" in popen_kwargs:
        raise TypeError(_NO_PREEXEC_FN)
    if os.name != "posix":
        raise NotImplementedError(
            f"graceful.spawn() starts its backend through a POSIX exec launcher (signals, process "
            f"groups, parent-death signal), which {sys.platform} does not have; start the child "
            "with subprocess.Popen and stop it in a graceful.register() cleanup (on Windows a "
            "Job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE ends it with this program; see "
            "`graceful docs portability`)"
        )
    if supervise and not sys.platform.startswith("linux"):
        raise NotImplementedError(
            f"graceful.spawn(supervise=True) needs Linux (a child subreaper and PR_SET_PDEATHSIG), "
            f"not {sys.platform}; use graceful.spawn(..., group=True), which stops the whole "
            "group when this program ends normally or by a signal it handles"
        )
    if not sys.executable:
        raise RuntimeError(
            "graceful.spawn() runs its launcher with sys.executable, which is empty in this "
            "interpreter; start the child with subprocess.Popen and graceful.track() instead"
        )
    executable, argv = _target(args, popen_kwargs.pop("shell", False), popen_kwargs)
    _budget.pass_down(popen_kwargs)  # the stop budget, a level down, in the child's env
    pdeathsig = sig if die_with_parent else 0
    tracked_sig, tracked_timeout, tracked_group = sig, timeout, group
    command: Callable[[int, int], list[str]]
    if supervise:

        def command(errfd: int, lifeline: int) -> list[str]:
            return _supervisor_command(
                errfd,
                sig=sig,
                timeout=timeout,
                group=group,
                die_with_parent=die_with_parent,
                executable=executable,
                argv=argv,
            )

        # The supervisor forwards; it escalates to SIGKILL itself, with time to reap, before we
        # would. An uncatchable signal reaches the backend as a mapped SIGTERM.
        tracked_sig = sig if sig not in _UNCATCHABLE else _signal.SIGTERM
        tracked_timeout = None if timeout is None else timeout + SUPERVISOR_MARGIN
        tracked_group = False
    else:

        def command(errfd: int, lifeline: int) -> list[str]:
            return _launcher_command(
                errfd, lifeline, pdeathsig=pdeathsig, group=group, executable=executable, argv=argv
            )

    found = None
    if not supervise:
        found = _check_executable(executable, popen_kwargs.get("env"), popen_kwargs.get("cwd"))

    def native(lifeline: int) -> Optional[tuple[list[str], Any]]:
        """setpriv and /bin/sh instead of the Python launcher, where they keep every guarantee."""
        if supervise:
            return None
        return _native.command(
            sig=pdeathsig,
            lifeline=lifeline,
            executable=executable,
            argv=argv,
            found=found,
            env=popen_kwargs.get("env"),
        )

    def start() -> subprocess.Popen[Any]:
        return _start(
            args,
            command=command,
            native=native,
            lifeline=pdeathsig != 0 and not supervise and not _pidfd.AVAILABLE,
            supervised=supervise,
            group=group,
            executable=executable,
            popen_kwargs=popen_kwargs,
        )

    if die_with_parent and threading.current_thread() is not threading.main_thread():
        proc = _spawner().call(start)
    else:
        proc = start()
    try:
        return track(proc, signal=tracked_sig, timeout=tracked_timeout, group=tracked_group)
    except BaseException:
        _discard(proc)
        raise


_UNCATCHABLE = tuple(getattr(_signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(_signal, n))

_NO_PREEXEC_FN = (
    "graceful.spawn() does not take preexec_fn: Python code between fork and exec can deadlock "
    "a program that has threads (graceful has helper threads), which is why spawn runs a launcher "
    "instead. What preexec_fn is usually for is built in: a new process group is group=True (or "
    "start_new_session=True), default signals and an empty signal mask are always set, and "
    "PR_SET_PDEATHSIG is die_with_parent=True. For anything else (resource limits, umask, "
    "nice), let a wrapper do it before exec, e.g. "
    "spawn(['sh', '-c', 'ulimit -n 256 && exec \"$@\"', 'sh', *args]) or ['prlimit', ...]; or "
    "start the child with subprocess.Popen yourself and pass it to graceful.track()"
)


def _launcher_command(
    errfd: int, lifeline: int, *, pdeathsig: int, group: bool, executable: str, argv: list[str]
) -> list[str]:
    return [
        sys.executable,
        "-I",
        "-S",
        _LAUNCHER,
        str(os.getpid()),
        str(pdeathsig),
        "1" if group else "0",
        str(errfd),
        str(lifeline),
        executable,
        "--",
        *argv,
    ]


def _supervisor_command(
    errfd: int,
    *,
    sig: int,
    timeout: Optional[float],
    group: bool,
    die_with_parent: bool,
    executable: str,
    argv: list[str],
) -> list[str]:
    """``graceful run`` for this backend; its options say what ``spawn``'s arguments said."""
    forward = [*_launcher.DEFAULT_FORWARD]
    stop = [*_launcher.DEFAULT_STOP]
    command = [sys.executable, "-I", "-S", _SUPERVISOR, "--quiet", "--own-group"]
    command += ["--report-fd", str(errfd)]
    command += ["--timeout", "none" if timeout is None else repr(timeout)]
    command += ["--orphan-timeout", repr(ORPHAN_TIMEOUT)]
    if sig in _UNCATCHABLE:
        command += ["--map", f"TERM:{int(sig)}"]
    else:  # the break signal is forwarded, and is a stop: the countdown starts with it
        name = _signals.name(sig)[3:]
        forward += [] if name in forward else [name]
        stop += [] if name in stop else [name]
    command += ["--signals", ",".join(forward), "--stop-signals", ",".join(stop)]
    if group:
        command.append("--group")
    if die_with_parent:
        command += ["--die-with-parent", "--parent-pid", str(os.getpid())]
    if executable != argv[0]:
        command += ["--executable", executable]
    return [*command, "--", *argv]


def _target(args: Any, shell: object, popen_kwargs: dict[str, Any]) -> tuple[str, list[str]]:
    """The program and argv that Popen would exec (same rules for ``shell`` and ``executable``)."""
    executable = popen_kwargs.pop("executable", None)
    argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    if shell:
        argv = ["/bin/sh", "-c", *argv]
        if executable:
            argv[0] = executable
    if not argv:
        raise ValueError("graceful.spawn() needs a program to run; args is empty")
    if executable is None:
        executable = argv[0]
    return os.fsdecode(executable), [os.fsdecode(a) for a in argv]


def _must_wait(kwargs: dict[str, Any], *, supervised: bool, group: bool) -> bool:
    """Wait for the exec only where something must be there when spawn returns: the
    supervisor's "ready", or a process group that Popen cannot make before 3.11 (the launcher
    makes it then). From 3.11 ``process_group=0`` makes it in the child before exec."""
    if supervised:
        return True
    if group and not kwargs.get("start_new_session"):
        if sys.version_info < (3, 11):
            return True
        kwargs.setdefault("process_group", 0)
    return False


def _check_executable(executable: str, env: Any, cwd: Any) -> bytes:
    """Raise what ``Popen`` would if ``executable`` cannot be run: the launcher's ``execvp``
    looks it up the same way (``env``'s PATH, relative to ``cwd``), after ``spawn`` returned.
    Returns the file that will be run."""
    path_var = None  # the launcher inherits our PATH
    if env is not None:  # the launcher's environment is env
        value = env.get("PATH", env.get(b"PATH"))
        path_var = os.defpath if value is None else os.fsdecode(value)
    error = 0
    for candidate in _launcher.exec_paths(executable, path_var):
        path = candidate
        if cwd is not None and not os.path.isabs(path):
            path = os.path.join(os.fsencode(cwd), path)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return os.fsencode(path)
        if error == 0 and os.path.exists(path):
            error = errno.EACCES  # as execve: the first error that is not ENOENT is the one
    error = error or errno.ENOENT
    raise OSError(error, os.strerror(error), executable)  # FileNotFoundError, PermissionError


def _start(
    args: Any,
    *,
    command: Callable[[int, int], list[str]],
    native: Callable[[int], Optional[tuple[list[str], Any]]],
    lifeline: bool,
    supervised: bool,
    group: bool,
    executable: str,
    popen_kwargs: dict[str, Any],
) -> subprocess.Popen[Any]:
    import subprocess

    kwargs = dict(popen_kwargs)
    wait = _must_wait(kwargs, supervised=supervised, group=group)
    life = -1
    extra_fds = []
    if lifeline:
        life = _parent_death.lifeline_for_child()
        extra_fds.append(life)
    err_read = err_write = -1
    if wait:
        err_read, err_write = os.pipe()
        extra_fds.append(err_write)
    _pass_fds(kwargs, extra_fds)
    fast = None if wait else native(life)
    mask = None
    if fast is not None:  # no Python in the child: the signals keep their default actions
        kwargs["env"] = fast[1]
        kwargs["restore_signals"] = True
    elif not supervised:
        # Launcher children start with every signal blocked: its interpreter never sees one (on
        # 3.13 a SIGINT during its start-up is an exit status 1, not a death by SIGINT); it
        # resets the dispositions, then empties the mask, and a signal sent meanwhile ends it by
        # default.
        mask = _dispositions.block(_dispositions.ASYNC_SIGNALS)
    try:
        try:
            try:
                argv = command(err_write, life) if fast is None else fast[0]
                proc = subprocess.Popen(argv, **kwargs)
            finally:
                _dispositions.set_mask(mask)
        finally:
            if err_write >= 0:
                os.close(err_write)
            if life >= 0:
                os.set_inheritable(life, False)
        if not wait:
            proc.args = args
            return proc
        try:
            report = _read_report(err_read, proc)
        except BaseException:
            _discard(proc)
            raise
    finally:
        if err_read >= 0:
            os.close(err_read)
    _check_report(report, proc, supervised=supervised, executable=executable)
    proc.args = args
    return proc


def _pass_fds(kwargs: dict[str, Any], fds: list[int]) -> None:
    """Let ``fds`` through to the child, however the caller set ``close_fds``."""
    if kwargs.get("close_fds", True):
        kwargs["pass_fds"] = (*kwargs.get("pass_fds", ()), *fds)
    else:
        for fd in fds:
            os.set_inheritable(fd, True)


def _check_report(
    report: str, proc: subprocess.Popen[Any], *, supervised: bool, executable: str
) -> None:
    """Raise (the child discarded) unless the report says the program runs."""
    if supervised:
        if report == _READY:
            return
        if not report:
            _discard(proc)
            import subprocess

            raise subprocess.SubprocessError(
                f"graceful.spawn(supervise=True): the supervisor ended (status "
                f"{proc.returncode}) before it could start {executable!r}; its stderr says why"
            )
    if report:
        _discard(proc)
        raise _launch_error(report, executable)


def _read_report(fd: int, proc: subprocess.Popen[Any]) -> str:
    """What the launcher wrote before exec: nothing if the exec succeeded."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"graceful.spawn(): the launcher (PID {proc.pid}) did not exec the program "
                f"within {LAUNCH_TIMEOUT:g} s; is the machine overloaded?"
            )
        if not poller.poll(int(remaining * 1000) + 1):
            continue
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(data)


def _launch_error(report: str, executable: str) -> Exception:
    code, _, message = report.partition(":")
    errno = int(code) if code.isdigit() else 0
    if errno:
        return OSError(errno, os.strerror(errno), executable)  # FileNotFoundError for ENOENT
    import subprocess

    return subprocess.SubprocessError(
        f"graceful.spawn(): the launcher failed before it could start {executable!r}: {message}"
    )


def _discard(proc: subprocess.Popen[Any]) -> None:
    """Kill and reap a child that will not be handed to the caller, and close its pipes."""
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --- the long-lived forking thread --------------------------------------------------------


class _Spawner:
    """A daemon thread that forks for callers that are not the main thread.

    The kernel sends PR_SET_PDEATHSIG when the thread that forked the child exits; this one
    lives as long as the process, so a short-lived worker can spawn a backend that outlives it.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        import queue  # only for a spawn from another thread than the main one

        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = (
            queue.SimpleQueue()
        )
        self.thread = threading.Thread(target=self._run, name="graceful-spawner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            func, box, done = self.jobs.get()
            try:
                box.append((True, func()))
            except BaseException as exc:
                box.append((False, exc))
            finally:
                done.set()
                del func, box, done

    def call(self, func: Callable[[], _T]) -> _T:
        box: list[tuple[bool, Any]] = []
        done = threading.Event()
        self.jobs.put((func, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        result: _T = value
        return result


_spawner_lock = threading.Lock()
_the_spawner: Optional[_Spawner] = None


def _spawner() -> _Spawner:
    global _the_spawner
    with _spawner_lock:
        if _the_spawner is None or _the_spawner.pid != os.getpid():
            _the_spawner = _Spawner()  # after a fork the old thread does not exist here
        return _the_spawner
