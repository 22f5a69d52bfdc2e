"""``graceful doctor``: why a program started the way this one was may not end well here.

It looks at what a program inherits and cannot see for itself: signals ignored or blocked by
whoever started it (``/proc/self/status`` and the parent's), whether PID 1 can hear a stop request,
who adopts orphans (found by making one), the service manager or container, and the stop
timeouts that apply. Each finding is ``ok``, ``note`` or ``warning``; the exit status is 1 when
there is a warning.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
from typing import NamedTuple, Optional

from .._core import signals as _signals
from .._version import __version__
from . import procfs
from .run_options import DEFAULT_TIMEOUT as RUN_TIMEOUT

#: Python sets these to SIG_IGN itself at start-up: seeing them ignored here says nothing.
_PYTHON_IGNORES = frozenset(
    getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n)
)
#: Interactive shells ignore these for themselves and reset them for the programs they start.
_SHELL_IGNORES = frozenset(
    getattr(signal, n)
    for n in ("SIGINT", "SIGQUIT", "SIGTERM", "SIGTSTP", "SIGTTIN", "SIGTTOU")
    if hasattr(signal, n)
)
#: A PID 1 known to forward signals and reap (by its command name).
_INITS = ("systemd", "init", "tini", "tini-static", "dumb-init", "catatonit", "s6-svscan")


class Finding(NamedTuple):
    level: str  # "ok", "note" or "warning"
    text: str


class Section(NamedTuple):
    title: str
    findings: list[Finding]


def _names(signums: list[int]) -> str:
    return ", ".join(_signals.name(s) for s in signums)


def _ends(sig: int) -> bool:
    return _signals.default_action(sig) in ("terminate", "core")


# --- signals --------------------------------------------------------------------------------


def signal_findings(own: dict[str, str], parent: dict[str, str]) -> list[Finding]:
    """Ignored and blocked signals this process inherited, and what its parent has."""
    found = []
    valid = signal.valid_signals()  # not glibc's two internal ones, which it manages itself
    ignored = [
        s
        for s in procfs.signal_set(own.get("SigIgn", ""))
        if s in valid and s not in _PYTHON_IGNORES
    ]
    blocked = [s for s in procfs.signal_set(own.get("SigBlk", "")) if s in valid]
    for sig in ignored:
        if not _ends(sig):
            continue
        why = {
            "SIGHUP": "nohup does this, so that closing the terminal does not end the program",
            "SIGINT": "a non-interactive shell does this to background jobs (cmd &)",
            "SIGQUIT": "a non-interactive shell does this to background jobs (cmd &)",
        }.get(_signals.name(sig), "whoever started this process set it, and exec kept it")
        level = "warning" if sig == signal.SIGTERM else "note"
        found.append(
            Finding(
                level,
                f"{_signals.name(sig)} is ignored, inherited from the parent ({why}). "
                "graceful leaves it ignored (guard(override_ignored=True) handles it anyway); "
                "`graceful run` keeps it ignored in its command and does not forward it.",
            )
        )
    if blocked:
        found.append(
            Finding(
                "warning",
                f"blocked in the signal mask, inherited across exec: {_names(blocked)}. A blocked "
                "signal stays pending and does nothing: a stop request is never acted on. The "
                "parent forgot to unblock after fork; graceful.spawn and `graceful run` start "
                "their children with an empty mask.",
            )
        )
    if not ignored and not blocked:
        found.append(Finding("ok", "no inherited ignored or blocked signal that ends a process"))
    if parent:
        p_ignored = [
            s
            for s in procfs.signal_set(parent.get("SigIgn", ""))
            if s in valid and _ends(s) and s not in _PYTHON_IGNORES
        ]
        p_blocked = [s for s in procfs.signal_set(parent.get("SigBlk", "")) if s in valid]
        who = f"the parent ({parent.get('Name', '?')}, PID {os.getppid()})"
        reset = [s for s in p_ignored if s not in ignored]
        if reset and set(reset) <= _SHELL_IGNORES:
            found.append(
                Finding(
                    "ok",
                    f"{who} ignores {_names(reset)} for itself but did not pass that on "
                    "(what an interactive shell does)",
                )
            )
        elif reset:
            found.append(Finding("note", f"{who} ignores {_names(reset)}; this process does not"))
        if p_blocked:
            found.append(Finding("note", f"{who} blocks {_names(p_blocked)}"))
    return found


# --- processes ------------------------------------------------------------------------------


def pid1_findings(pid1: dict[str, str], container: bool) -> list[Finding]:
    """Can PID 1 of this PID namespace hear a stop request?"""
    if os.getpid() == 1:
        return [
            Finding(
                "warning",
                "this process is PID 1: the kernel drops every signal it has no handler for "
                "(SIGTERM from docker stop included), and orphans are its to reap. Run programs "
                "as PID 1 under `graceful run -- ...` (or docker run --init).",
            )
        ]
    if not pid1:
        return [Finding("note", "PID 1 cannot be read here (/proc is missing or hidden)")]
    name = pid1.get("Name", "?")
    command = procfs.cmdline(1) or name
    # A handler; or blocked and taken with signalfd (catatonit), or waited for with sigtimedwait
    # (tini, graceful run), which unblocks the signals it waits for while it waits.
    hears = procfs.signal_set(pid1.get("SigCgt", "")) + procfs.signal_set(pid1.get("SigBlk", ""))
    if (
        signal.SIGTERM in hears
        or procfs.wchan(1).startswith("do_sigtimedwait")
        or any(name.startswith(i) for i in _INITS)
    ):
        return [Finding("ok", f"PID 1 is {command!r} and handles SIGTERM")]
    level = "warning" if container else "note"
    return [
        Finding(
            level,
            f"PID 1 is {command!r}, which has no SIGTERM handler: the kernel drops a SIGTERM "
            "sent to it from inside its PID namespace, so a container stop waits out its timeout "
            "and ends in SIGKILL, and orphans may never be reaped. Make PID 1 `graceful run -- "
            "...` (or docker run --init).",
        )
    ]


def orphan_reaper() -> Optional[int]:
    """Who adopts an orphan of this process: make one and ask it (None if that fails).

    A child forks a grandchild and exits; the grandchild reports its new parent. Both end in
    ``os._exit``; the grandchild is reaped by whoever adopted it.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            me = os.getpid()
            if os.fork() == 0:
                _report_new_parent(me, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    try:
        import select

        ready, _, _ = select.select([read_end], [], [], 3.0)
        data = os.read(read_end, 32) if ready else b""
    finally:
        os.close(read_end)
    return int(data) if data.isdigit() else None


def _report_new_parent(old_parent: int, fd: int) -> None:  # pragma: no cover - in the grandchild
    import time

    deadline = time.monotonic() + 2.0
    while os.getppid() == old_parent and time.monotonic() < deadline:
        time.sleep(0.001)
    os.write(fd, str(os.getppid()).encode())


def reaper_findings(reaper: Optional[int]) -> list[Finding]:
    if reaper is None:
        return [Finding("note", "could not tell who adopts orphans here")]
    entry = procfs.stat(reaper)
    what = f"PID {reaper} ({procfs.cmdline(reaper) or (entry.comm if entry else '?')})"
    if reaper == 1:
        return [
            Finding(
                "ok",
                f"orphans of this process are adopted by {what}, PID 1 of this namespace "
                "(no subreaper above us)",
            )
        ]
    return [
        Finding(
            "ok",
            f"orphans of this process are adopted by a subreaper: {what}. It, not init, must "
            "reap them and stop them at the end (`graceful run` does).",
        )
    ]


# --- environment ----------------------------------------------------------------------------


def container_hints() -> list[str]:
    """Why we think this is a container, if we do."""
    hints = []
    for path, what in (("/.dockerenv", "docker"), ("/run/.containerenv", "podman")):
        if os.path.exists(path):
            hints.append(f"{what} ({path})")
    container = os.environ.get("container")  # noqa: SIM112 - lower case is the convention here
    if container:
        hints.append(f"container={container} in the environment (systemd-nspawn, podman, lxc)")
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        hints.append("Kubernetes (KUBERNETES_SERVICE_HOST)")
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            cgroup = f.read()
    except OSError:
        cgroup = ""
    for word in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if word in cgroup:
            hints.append(f"cgroup path mentions {word}")
            break
    nspid = procfs.status().get("NSpid", "").split()
    if len(nspid) > 1:
        hints.append(f"in a PID namespace (this is PID {nspid[-1]} here, {nspid[0]} outside)")
    return hints


def systemd_unit() -> Optional[str]:
    """The systemd unit this process runs in, from its cgroup path (None if none is named)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


def systemd_properties(unit: str) -> dict[str, str]:
    """``systemctl show`` for the stop settings of ``unit`` ({} if systemctl cannot say)."""
    import shutil
    import subprocess

    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return {}
    keys = "TimeoutStopUSec,KillMode,KillSignal,SendSIGKILL,FinalKillSignal"
    try:
        out = subprocess.run(
            [systemctl, "show", "--property", keys, unit],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def environment_findings(hints: list[str]) -> tuple[list[Finding], list[Finding]]:
    """(where this runs, the stop timeouts that apply)."""
    where: list[Finding] = []
    timeouts: list[Finding] = []
    invocation = os.environ.get("INVOCATION_ID")
    notify = os.environ.get("NOTIFY_SOCKET")
    unit = systemd_unit()
    if invocation or notify:
        where.append(
            Finding(
                "note",
                "started by systemd"
                + (f" as {unit}" if unit else "")
                + (f"; NOTIFY_SOCKET={notify} (Type=notify: send READY=1)" if notify else ""),
            )
        )
        props = systemd_properties(unit) if unit else {}
        if props:
            timeouts.append(
                Finding(
                    "note",
                    f"systemd ({unit}): {props.get('KillSignal', '15')} first, SIGKILL after "
                    f"TimeoutStopSec={props.get('TimeoutStopUSec', '?')} "
                    f"(KillMode={props.get('KillMode', '?')}: "
                    + (
                        "every process of the unit is signalled)"
                        if props.get("KillMode") == "control-group"
                        else "see man systemd.kill)"
                    ),
                )
            )
        else:
            timeouts.append(
                Finding("note", "systemd: SIGTERM, then SIGKILL after TimeoutStopSec (90 s)")
            )
    if hints:
        where.append(Finding("note", "in a container: " + "; ".join(hints)))
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            timeouts.append(
                Finding(
                    "note",
                    "Kubernetes: preStop hook, SIGTERM to PID 1 of each container, SIGKILL after "
                    "terminationGracePeriodSeconds (30 s unless the pod says otherwise; not "
                    "visible from inside)",
                )
            )
        else:
            timeouts.append(
                Finding(
                    "note",
                    "docker/podman stop: STOPSIGNAL (SIGTERM) to PID 1, SIGKILL 10 s later "
                    "unless --stop-timeout or -t says otherwise (not visible from inside)",
                )
            )
    if not where:
        where.append(Finding("ok", "not under systemd, not in a container, as far as we can see"))
    import graceful

    timeouts.append(
        Finding(
            "ok",
            f"graceful: a guard's deadline is {graceful.DEFAULT_TIMEOUT:g} s unless timeout= says "
            f"otherwise; `graceful run` SIGKILLs {RUN_TIMEOUT:g} s after a stop signal. Keep "
            "both below the stop timeout of whatever stops you.",
        )
    )
    return where, timeouts


def terminal_findings() -> list[Finding]:
    try:
        if not os.isatty(0):
            return [Finding("ok", "stdin is not a terminal: no Ctrl-C, Ctrl-Z or hang-up from one")]
        foreground = os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return []
    if foreground:
        return [
            Finding(
                "ok",
                "in the terminal's foreground: Ctrl-C sends SIGINT to this whole process group, "
                "children included",
            )
        ]
    return [Finding("note", "a background job of its terminal: Ctrl-C does not reach it")]


# --- report ---------------------------------------------------------------------------------


def collect() -> list[Section]:
    own = procfs.status("self")
    parent = procfs.status(os.getppid()) if os.getppid() > 0 else {}
    hints = container_hints()
    where, timeouts = environment_findings(hints)
    return [
        Section("Signals", signal_findings(own, parent)),
        Section(
            "Processes",
            pid1_findings(procfs.status(1), bool(hints)) + reaper_findings(orphan_reaper()),
        ),
        Section("Terminal", terminal_findings()),
        Section("Where this runs", where),
        Section("Stop timeouts", timeouts),
    ]


def render(sections: list[Section]) -> str:
    parent = procfs.stat(os.getppid())
    lines = [
        f"graceful doctor {__version__}: {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, PID {os.getpid()}, parent PID {os.getppid()}"
        + (f" ({parent.comm})" if parent else ""),
    ]
    for section in sections:
        if not section.findings:
            continue
        lines.append("")
        lines.append(section.title)
        for finding in section.findings:
            lines.append(f"  {finding.level + ':':9}{finding.text}")
    return "\n".join(lines) + "\n"


def main() -> int:
    if not procfs.available():
        print(
            f"graceful doctor: reads /proc, which {sys.platform} does not have here; see "
            "`graceful signals` for what each signal does"
        )
        return 0
    sections = collect()
    print(render(sections), end="")
    warnings = [f for s in sections for f in s.findings if f.level == "warning"]
    return 1 if warnings else 0
