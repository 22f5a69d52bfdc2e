"""``spawn``'s fast launcher: util-linux ``setpriv`` and ``/bin/sh`` instead of an interpreter.

The Python launcher (``launcher.py``) puts a second interpreter start (10 to 20 ms) between the
fork and the program. Where what it does can be had from native programs, ``spawn`` runs::

    Popen([SETPRIV, "--pdeathsig", NAME, "--", SHELL, "-c", CHECK, "sh", PPID, SIG, LIFELINE,
           LC_ALL, *argv], env=ENV_WITH_LC_ALL_C, restore_signals=True)

* ``setpriv --pdeathsig`` (util-linux >= 2.33, on Debian and Ubuntu by default) arms
  PR_SET_PDEATHSIG and execs the shell;
* the shell reads ``$PPID`` when it starts, after the ``prctl``: if it is not the parent recorded
  before the fork, the parent died before the signal was armed, the kernel will send nothing, and
  the shell signals itself instead of running the program (the Python launcher's check);
* it writes the launcher's note (``GRACEFUL_PARENT``) for ``die_with_parent`` in the program and
  execs it, PATH searched in the program's environment as ``execvp`` does.

What the program inherits across those execs is what it would from ``Popen``: SIG_IGN
dispositions and the forking thread's mask. So this path is taken only when that is already
clean: nothing ignored in the process but SIGPIPE and SIGXFSZ (``restore_signals`` resets them)
and an empty mask in the forking thread. No Python runs in the child (``Popen`` forks with
``vfork`` and execs at once), so a parent with busy threads is no risk.

Exec failures are reported as before: ``spawn`` has looked the program up (missing: a
``FileNotFoundError`` at the call), and a file that exec would refuse, or that the shell would
run as a script where ``execve`` refuses it (no ``#!``, a binary for another machine, a missing
``#!`` interpreter), goes through the Python launcher, which ends with status 127 and the reason.

Without ``die_with_parent`` there is nothing to arm or check, and the program is ``Popen``'s own
child (an exec failure raises at the call, as with ``Popen``).

Anywhere else (no setpriv, not Linux, ``GRACEFUL_DISABLE=pdeathsig`` or ``setpriv``, a
``Popen(executable=...)`` that differs from ``argv[0]``, an environment without ``PATH``, a
parent that ignores or blocks signals) :func:`command` returns None and ``spawn`` uses the
Python launcher.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import os
import sys

from .._core import signals as _signals
from . import features as _features
from .launcher import ENV

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

#: Where setpriv is looked for (never PATH: the program's PATH is not ours to trust for this).
SETPRIV_PATHS = ("/usr/bin/setpriv", "/bin/setpriv")
#: The shell that checks the parent and execs the program.
SHELL = "/bin/sh"
#: $1 the parent's PID recorded before the fork, $2 the signal, $3 the lifeline fd (-1: none),
#: $4 the program's LC_ALL: empty if unset, else "=" and its value (setpriv runs with LC_ALL=C:
#: loading the locale was a fifth of its start).
CHECK = (
    '[ "$PPID" = "$1" ] || { kill -"$2" $$; exit $((128 + $2)); }; '
    "case $4 in =*) LC_ALL=${4#=}; export LC_ALL;; *) unset LC_ALL;; esac; "
    f'{ENV}=$$:$1:$2:$3; export {ENV}; shift 4; exec "$@"'
)
#: Ignored by Python itself at start-up and reset to SIG_DFL by Popen's ``restore_signals``.
_RESTORED = frozenset(getattr(_signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(_signal, n))
#: The signals that must not be ignored when the fast path starts a program, as a kernel signal
#: mask. valid_signals() leaves out the C library's own (32 and 33 on glibc), which /proc may
#: report as ignored and which no program can reset.
_MUST_BE_DEFAULT: int = sum(
    1 << (sig - 1)
    for sig in (_signal.valid_signals() if hasattr(_signal, "valid_signals") else ())
    if sig not in _RESTORED
)

#: setpriv's path once probed ("" if unusable), None before.
_setpriv: Optional[str] = None
#: The ELF identity of this interpreter's executable (class, byte order, machine), once read.
_elf_self: Optional[bytes] = None


def setpriv() -> str:
    """The path of a setpriv that has ``--pdeathsig``, or "" (probed once per process).

    No lock: threads that race here each probe, and agree (a lock held by another thread when
    the process forks would stay held in the child, whose first ``spawn`` would hang)."""
    global _setpriv
    found = _setpriv
    if found is None:
        found = _setpriv = _probe()
    return found


def _probe() -> str:
    import subprocess

    for path in SETPRIV_PATHS:
        if not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [path, "--help"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={"LC_ALL": "C", "PATH": os.defpath},
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and b"--pdeathsig" in out.stdout:
            return path
    return ""


def signal_name(sig: int) -> str:
    """``sig`` as setpriv's ``--pdeathsig`` takes it (a name: it refuses numbers)."""
    rtmin = getattr(_signal, "SIGRTMIN", None)
    if rtmin is not None and sig >= rtmin:
        return f"RTMIN+{sig - rtmin}"
    return _signals.name(sig)[3:]


def command(
    *,
    sig: int,
    lifeline: int,
    executable: str,
    argv: list[str],
    found: Any,
    env: Any,
) -> Optional[tuple[list[str], Any]]:
    """The argv and ``env`` for ``Popen`` that start ``argv`` through setpriv and the shell with
    every guarantee of the Python launcher, or None where this path cannot give them all (see the
    module docstring). The program's environment is ``env`` (None: ours) as given.

    ``found`` is the file ``spawn``'s look-up found (bytes), ``env`` Popen's ``env``."""
    if not (sys.platform.startswith("linux") and executable == argv[0] and clean_signals()):
        return None
    if not sig:  # nothing to arm, nothing to check: Popen itself, which raises exec errors
        return list(argv), env
    tool = setpriv() if _can_arm() and _same_search(argv[0], env) and runnable(found) else ""
    if not tool:
        return None
    tool_env, lc_all = _c_locale(env)
    check = [SHELL, "-c", CHECK, "sh", str(os.getpid()), str(sig), str(lifeline), lc_all]
    return [tool, "--pdeathsig", signal_name(sig), "--", *check, *argv], tool_env


def _c_locale(env: Any) -> tuple[dict[Any, Any], Any]:
    """``env`` (None: ours) with LC_ALL=C, and the shell's argument that puts it back."""
    tool_env = dict(os.environb if env is None else env)
    value = None
    for key in ("LC_ALL", b"LC_ALL"):
        value = tool_env.pop(key, value)
    tool_env[b"LC_ALL"] = b"C"
    if value is None:
        return tool_env, ""
    return tool_env, b"=" + os.fsencode(value)


def _can_arm() -> bool:
    return _features.uses("pdeathsig") and _features.uses("setpriv")


def _same_search(program: str, env: Any) -> bool:
    """The shell finds ``program`` where ``spawn``'s look-up did: the same PATH (without one,
    the shell's default is not ``execvp``'s)."""
    return os.sep in program or env is None or "PATH" in env or b"PATH" in env


def clean_signals() -> bool:
    """True if a program exec'd from this thread by ``Popen(restore_signals=True)`` gets default
    dispositions and an empty mask: nothing blocked here, nothing ignored but what Popen resets.
    What is ignored comes from ``/proc/self/stat`` (what the kernel holds, whoever set it; its
    status file says the same but costs three times as much to read)."""
    if _signal.pthread_sigmask(_signal.SIG_BLOCK, ()):
        return False
    try:
        fd = os.open("/proc/self/stat", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        # After the command name (which may hold ")"), field 33 of proc(5), "sigignore", is the
        # 31st: the fields after the name start at the third.
        ignored = int(stat.rsplit(b")", 1)[1].split()[33 - 3])
    except (OSError, ValueError, IndexError):
        return False
    return ignored & _MUST_BE_DEFAULT == 0


def runnable(path: Any) -> bool:
    """True if ``execve`` of ``path`` will not fail with ENOEXEC or for a missing ``#!``
    interpreter, where the shell would run the file as a script or word its error otherwise:
    an ELF file for this machine, or a ``#!`` line naming an executable file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        head = os.read(fd, 256)
    except OSError:
        return False
    finally:
        os.close(fd)
    if head.startswith(b"\x7fELF"):
        return _elf_identity(head) == _own_elf_identity()
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        if len(words) == 0 or (b"\n" not in head and len(head) == 256):
            return False  # an empty or overlong #! line: let the launcher report it
        interpreter = words[0]
        return os.access(interpreter, os.X_OK) and not os.path.isdir(interpreter)
    return False


def _elf_identity(head: bytes) -> bytes:
    """Class, byte order and machine (e_ident[4:6], e_machine): what decides that this kernel
    runs the file. Empty if the header is too short."""
    return head[4:6] + head[18:20] if len(head) >= 20 else b""


def _own_elf_identity() -> bytes:
    global _elf_self
    if _elf_self is None:
        try:
            with open(sys.executable, "rb") as exe:
                _elf_self = _elf_identity(exe.read(20)) or b"?"
        except OSError:
            _elf_self = b"?"
    return _elf_self
