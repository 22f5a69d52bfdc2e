"""`graceful demo`, the README's first command, works and tells the truth."""

from __future__ import annotations

import subprocess
import sys

from helpers import TIMEOUT


def test_demo_shows_every_step_and_death_by_sigterm() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "graceful", "demo"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    steps = [line.split("[demo] ")[1][:2] for line in out.stdout.splitlines() if "[demo] " in line]
    assert steps == ["st", "bu", "1.", "2.", "3.", "4.", "5."]
    assert "backend stopped and reaped (returncode -15)" in out.stdout
    assert "graceful demo: backend pid" in out.stdout
    assert "STILL RUNNING" not in out.stdout
    assert "killed by SIGTERM (returncode -15)" in out.stdout
    assert out.stdout.rstrip().endswith("graceful demo: OK")
