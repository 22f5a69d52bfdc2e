"""The launcher: a child subreaper that starts the program and owns everything it starts.

The harness runs this file as a script (``python -I -S _launcher.py FD -- ARGV...``), so it imports
the standard library only. It makes itself a child subreaper (Linux), so every descendant the
program leaves behind, daemonized or not, is re-parented to it and stays in its process tree; it
starts the program (fork and exec) in a new session with every signal at its default disposition
and an empty signal mask; it runs in a session of its own, out of the test process's group;
it is the program's parent, so signalling the program by PID is safe until it reaps it; and when
the harness goes away (its end of the control socket closes, even by SIGKILL), it freezes and
kills the whole tree, reaps it and exits.

One line each way on the control socket FD:

* launcher to harness: ``started PID``, ``error ERRNO MESSAGE``, ``sent SIGNUM T``,
  ``gone SIGNUM``, ``exited STATUS T`` (T: ``time.monotonic()``, one clock for all processes),
  ``tree ENTRIES`` (the live descendants, see :func:`encode_tree`);
* harness to launcher: ``signal SIGNUM process|group``, ``scan``, ``bye`` (it will read the
  timeline file); end of file: kill everything, and remove the timeline file unless ``bye`` came
  first (the harness died: nobody will read or remove it).

The harness imports this module too, for :func:`decode_tree` and :func:`kill_verified`. Imports
are kept few (no json, socket or contextlib): the launcher's start-up is part of every test.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import Any, Optional

_PR_SET_CHILD_SUBREAPER = 36
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_KILL_WAIT = 5.0  # seconds to wait for a SIGKILLed tree to be reaped

#: The process tree can be read (Linux). Elsewhere only the program's session is killed.
HAS_PROC = os.path.isdir("/proc/self")


# --- /proc ------------------------------------------------------------------------------------


def stat(pid: int) -> Optional[dict[str, Any]]:
    """State, parent, group, session and start time of ``pid`` from /proc, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode(errors="replace")
    fields = raw[raw.rindex(b")") + 2 :].split()
    return {
        "pid": pid,
        "comm": comm,
        "state": fields[0].decode(),
        "ppid": int(fields[1]),
        "pgid": int(fields[2]),
        "sid": int(fields[3]),
        "starttime": int(fields[19]),
    }


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]


def tree(root: int) -> list[dict[str, Any]]:
    """Every live (not zombie) descendant of ``root``, parents first, with its command line."""
    if not HAS_PROC:
        return []
    children: dict[int, list[dict[str, Any]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = stat(int(name))
            if info is not None:
                children.setdefault(info["ppid"], []).append(info)
    found: list[dict[str, Any]] = []
    todo = [root]
    while todo:
        for info in children.get(todo.pop(0), []):
            todo.append(info["pid"])
            if info["state"] not in ("Z", "X"):
                info["cmdline"] = _cmdline(info["pid"])
                found.append(info)
    return found


_FIELDS = ("pid", "ppid", "pgid", "sid", "state", "starttime")


def encode_tree(found: list[dict[str, Any]]) -> str:
    """``tree()`` on one line: ``pid,ppid,pgid,sid,state,starttime,HEXCMDLINE`` joined by spaces."""
    return " ".join(
        ",".join(str(info[k]) for k in _FIELDS)
        + ","
        + "\0".join(info.get("cmdline", [])).encode(errors="replace").hex()
        for info in found
    )


def decode_tree(text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for entry in text.split():
        *fields, cmdline = entry.split(",")
        info: dict[str, Any] = {k: v if k == "state" else int(v) for k, v in zip(_FIELDS, fields)}
        raw = bytes.fromhex(cmdline).decode(errors="replace")
        info["cmdline"] = raw.split("\0") if raw else []
        found.append(info)
    return found


def kill_verified(info: dict[str, Any], sig: int) -> bool:
    """Send ``sig`` to the process ``info`` describes, if it is still that process.

    A pidfd is opened first, then the start time is compared with the one ``info`` recorded: if
    they agree, the pidfd names that very process and not a newcomer that reused its PID. False
    if the process is gone.
    """
    pid = info["pid"]
    try:
        fd: Optional[int] = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        now = stat(pid)
        if now is None or now["starttime"] != info["starttime"]:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:  # no pidfds: the start time was checked just now, as close to the kill as we can
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        if fd is not None:
            os.close(fd)


# --- the launcher -----------------------------------------------------------------------------


class Launcher:
    """The state of the launcher process: the program, its status, the control socket."""

    def __init__(self, control: int) -> None:
        self.control = control
        self.pid = 0
        self.status: Optional[int] = None
        self.buffer = b""
        self.ending = False
        self.orderly = False  # the harness said bye: it reads and removes the timeline file

    def say(self, line: str) -> None:
        data = line.encode(errors="replace") + b"\n"
        try:
            while data:
                data = data[os.write(self.control, data) :]
        except OSError:  # the harness is gone: clean up and leave
            self.ending = True

    def start(self, argv: list[str]) -> bool:
        """fork and exec the program, not posix_spawn: glibc's posix_spawn leaves its two
        internal signals (32 and 33) ignored in the child, and exec keeps what is ignored."""
        reset_glibc = _glibc_signals_resetter()
        errors_r, errors_w = os.pipe()  # close-on-exec: end of file here means exec succeeded
        try:
            self.pid = os.fork()
        except OSError as exc:
            os.close(errors_r)
            os.close(errors_w)
            self.say(f"error {exc.errno or 0} {exc.strerror or exc}")
            return False
        if self.pid == 0:
            os.close(errors_r)
            _exec_child(argv, errors_w, reset_glibc)  # never returns
        os.close(errors_w)
        with open(errors_r, "rb") as errors:
            failure = errors.read()
        if failure:
            os.waitpid(self.pid, 0)
            number, _, message = failure.decode(errors="replace").partition(" ")
            self.pid = 0
            self.say(f"error {number} {message}")
            return False
        self.say(f"started {self.pid}")
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status
                self.say(f"exited {status} {time.monotonic()!r}")

    def send(self, sig: int, to: str) -> None:
        """Signal the program or its group, only while we have not reaped it: until then its
        PID (and so its group's number) cannot belong to anyone else."""
        self.reap()
        if self.status is not None:
            self.say(f"gone {sig}")
            return
        sent_at = time.monotonic()  # before kill(): the program may act on it at once
        try:
            if to == "group":
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:  # a group the program has left, and that is empty
            self.say(f"gone {sig}")
            return
        self.say(f"sent {sig} {sent_at!r}")

    def command(self, line: str) -> None:
        words = line.split()
        if words[:1] == ["signal"] and len(words) == 3:
            self.send(int(words[1]), words[2])
        elif words == ["bye"]:
            self.orderly = True
        elif words == ["scan"]:
            self.say("tree " + encode_tree(tree(os.getpid())))
        else:
            self.say(f"error 0 unknown command {line!r}")

    def read_commands(self) -> None:
        try:
            data = os.read(self.control, 65536)
        except OSError:
            data = b""
        if not data:
            self.ending = True
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.command(line.decode())

    def kill_all(self) -> None:
        """Freeze the whole tree (SIGSTOP: nothing forks or reaps), SIGKILL it, reap it.

        A stopped process stays alive and its parent (stopped too, or this launcher) reaps
        nothing meanwhile, so between the two rounds no PID of the tree can be reused.
        """
        if not HAS_PROC:
            if self.status is None:  # our unreaped child: its group number is still its own
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + _KILL_WAIT
            while self.status is None and time.monotonic() < deadline:
                self.reap()
                time.sleep(0.002)
            return
        frozen: set[int] = set()
        while True:
            new = [info for info in tree(os.getpid()) if info["pid"] not in frozen]
            if not new:
                break
            for info in new:
                frozen.add(info["pid"])
                kill_verified(info, signal.SIGSTOP)
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + _KILL_WAIT
        while True:
            self.reap()
            if not tree(os.getpid()) or time.monotonic() > deadline:
                break
            time.sleep(0.002)

    def run(self, wake_r: int) -> None:
        """Serve the harness until it goes away (or a signal ends us), then kill everything."""
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        self.reap()  # the program may have ended before we got here
        while not self.ending:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    signums = os.read(wake_r, 512)
                    if any(s in _ENDING for s in signums):
                        self.ending = True
                    self.reap()
                else:
                    self.read_commands()
        self.kill_all()


#: rt_sigaction's number, where it is known: glibc's own signals (32 and 33) can be reset only by
#: the system call itself (Python refuses them, and so does libc's sigaction()).
_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "i686": 174, "armv7l": 174, "armv6l": 174}


def _glibc_signals_resetter() -> Any:
    """How to put glibc's 32 and 33 back to SIG_DFL in the forked child, if this process has
    them ignored (inherited: pytest-xdist's workers on 3.13 are started by posix_spawn, which
    leaves them ignored, and exec keeps what is ignored); None when nothing needs doing. Made
    before the fork: the child only makes the system calls."""
    try:
        with open("/proc/self/status") as status:
            ignored = next(
                int(line.split()[1], 16) for line in status if line.startswith("SigIgn:")
            )
    except (OSError, StopIteration, ValueError):
        return None
    wanted = [sig for sig in (32, 33) if ignored & (1 << (sig - 1))]
    number = _RT_SIGACTION.get(os.uname().machine)
    if not wanted or number is None:
        return None
    import ctypes

    syscall = ctypes.CDLL(None, use_errno=True).syscall
    default = ctypes.create_string_buffer(64)  # SIG_DFL, no flags, no mask: all zeros

    def reset() -> None:
        for sig in wanted:
            syscall(number, sig, default, None, 8)

    return reset


def _exec_child(argv: list[str], errors: int, reset_glibc: Any = None) -> None:
    """In the forked child: a new session, every signal at its default disposition and none
    blocked, then exec; on failure, the errno and message go to the parent through ``errors``."""
    try:
        os.setsid()
        for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
            signal.signal(sig, signal.SIG_DFL)
        if reset_glibc is not None:
            reset_glibc()  # glibc's 32 and 33, if they came ignored (exec keeps what is ignored)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(errors, f"{exc.errno or 0} {exc.strerror or exc}".encode(errors="replace"))
    except BaseException as exc:
        os.write(errors, f"0 {exc!r}".encode(errors="replace"))
    os._exit(127)


def _ignore(signum: int, frame: object) -> None:
    """A Python-level handler: the signal only wakes the loop (through the wakeup fd)."""


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(f"usage: {argv[0]} FD -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    control = int(argv[1])  # one end of a socketpair: read and written like a pipe
    os.set_inheritable(control, False)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # SIGCHLD and the ending signals wake the loop through this pipe; it must be in place
    # before the program starts, or a program that ends at once would never be reaped.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    # Python-level handlers: the program starts with default dispositions anyway (setsigdef).
    for sig in (signal.SIGCHLD, *_ENDING):
        signal.signal(sig, _ignore)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    launcher = Launcher(control)
    if launcher.start(argv[3:]):
        launcher.run(wake_r)
    timeline = os.environ.get("GRACEFUL_TIMELINE")
    if timeline and not launcher.orderly:
        try:
            os.unlink(timeline)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv))  # nothing to flush or finalize: skip the interpreter's teardown
