"""``graceful doctor``: what a program inherited and where it runs, told to the user."""

from __future__ import annotations

import os
import subprocess
from typing import Optional

from backends_support import needs_linux
from cli_support import GRACEFUL, PY, need_pid_namespaces
from graceful._cli import doctor, procfs
from helpers import TIMEOUT

pytestmark = needs_linux
DOCTOR = [*GRACEFUL, "doctor"]


def run(argv: list[str], env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=None if env is None else {**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def test_doctor_reports_every_section() -> None:
    out = run(DOCTOR)
    assert out.returncode in (0, 1), out.stderr
    assert out.stdout.startswith("graceful doctor ")
    for title in ("Signals", "Processes", "Terminal", "Where this runs", "Stop timeouts"):
        assert f"\n{title}\n" in out.stdout
    assert "stdin is not a terminal" in out.stdout
    assert ("warning:" in out.stdout) == (out.returncode == 1)


def test_an_inherited_ignored_sigterm_is_a_warning_and_nohup_a_note() -> None:
    out = run(["sh", "-c", 'trap "" TERM; exec "$@"', "sh", *DOCTOR])
    assert out.returncode == 1
    assert "warning: SIGTERM is ignored, inherited from the parent" in out.stdout
    hup = run(["nohup", *DOCTOR])
    assert "note:    SIGHUP is ignored, inherited from the parent (nohup does this" in hup.stdout


def test_an_inherited_blocked_signal_is_a_warning() -> None:
    code = (
        "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    out = run([PY, "-c", code, *DOCTOR])
    assert out.returncode == 1
    assert "warning: blocked in the signal mask, inherited across exec: SIGTERM" in out.stdout


def test_it_finds_the_subreaper_that_adopts_orphans() -> None:
    out = run([*GRACEFUL, "run", "--", *DOCTOR])
    line = next(x for x in out.stdout.splitlines() if "orphans of this process" in x)
    assert "adopted by a subreaper: PID " in line
    assert "graceful run" in line


def test_systemd_and_containers_are_recognised_from_the_environment() -> None:
    env = {"INVOCATION_ID": "0123", "NOTIFY_SOCKET": "/run/x", "container": "podman"}
    out = run(DOCTOR, env)
    assert "started by systemd" in out.stdout
    assert "NOTIFY_SOCKET=/run/x (Type=notify: send READY=1)" in out.stdout
    assert "container=podman in the environment" in out.stdout
    assert "docker/podman stop: STOPSIGNAL (SIGTERM) to PID 1, SIGKILL 10 s later" in out.stdout


def test_as_pid1_it_warns_and_under_graceful_run_pid1_is_fine() -> None:
    need_pid_namespaces()
    ns = ["unshare", "--pid", "--fork", "--mount-proc"]
    alone = run([*ns, *DOCTOR])
    assert "warning: this process is PID 1" in alone.stdout
    assert alone.returncode == 1
    supervised = run([*ns, *GRACEFUL, "run", "-q", "--", *DOCTOR])
    assert "graceful run" in supervised.stdout
    assert "and handles SIGTERM" in supervised.stdout


def test_signal_masks_are_read_from_proc() -> None:
    assert procfs.signal_set("0000000000004001") == [1, 15]
    assert procfs.signal_set("") == []
    own = procfs.status()
    assert int(own["Pid"]) == os.getpid()
    findings = doctor.signal_findings({"SigIgn": "0000000000000001", "SigBlk": "0"}, {})
    assert [f.level for f in findings] == ["note"]
    assert "SIGHUP is ignored" in findings[0].text


def test_orphan_reaper_is_pid1_or_a_subreaper_above_us() -> None:
    reaper = doctor.orphan_reaper()
    assert reaper is not None
    chain, pid = [], os.getpid()
    while pid > 1:
        chain.append(pid)
        entry = procfs.stat(pid)
        assert entry is not None
        pid = entry.ppid
    assert reaper == 1 or reaper in chain[1:], (reaper, chain)
