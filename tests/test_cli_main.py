"""The ``graceful`` command itself: help, version, ``python -m graceful``, and packaging."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import graceful
from cli_support import graceful_cli
from graceful._cli import main
from helpers import TIMEOUT

ROOT = Path(__file__).parent.parent
SUBCOMMANDS = ("run", "signals", "doctor", "demo")


def test_version_is_a_static_string_in_all_three_places() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", graceful.__version__)
    assert "__version__" in graceful.__all__
    out = graceful_cli("--version")
    assert out.returncode == 0
    assert out.stdout == f"graceful {graceful.__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "graceful._version.__version__" }' in pyproject


@pytest.mark.parametrize("args", [(), *((name,) for name in SUBCOMMANDS)])
def test_help_on_the_command_and_every_subcommand(args: tuple[str, ...]) -> None:
    out = graceful_cli(*args, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: graceful")
    if not args:
        for name in SUBCOMMANDS:
            assert name in out.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    out = graceful_cli()
    assert out.returncode == 2
    assert "usage: graceful" in out.stderr


def test_main_returns_the_exit_status() -> None:
    assert main(["signals", "--format", "markdown"]) == 0
    code = (
        "from graceful._cli import main\n"
        "raise SystemExit(main(['run', '--', 'sh', '-c', 'exit 4']))"
    )
    out = subprocess.run([sys.executable, "-c", code], timeout=TIMEOUT, check=False)
    assert out.returncode == 4  # run takes over its process: never call it inside another


def test_run_refuses_a_process_with_threads() -> None:
    """It blocks every signal and forks by hand: other threads would get the signals."""
    code = (
        "import threading, time; from graceful._cli import main\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "raise SystemExit(main(['run', '--', 'true']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert out.returncode == 2
    assert "must be the only thread of its process" in out.stderr


def test_the_console_script_points_at_the_cli() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'graceful = "graceful._cli:main"' in pyproject
    script = Path(sys.executable).parent / "graceful"
    if script.exists():  # installed with pip: the script works
        out = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=True
        )
        assert out.stdout.strip() == f"graceful {graceful.__version__}"


def test_the_distribution_is_graceful_end_and_the_readme_installs_it() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^name = "graceful-end"', pyproject, re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    assert "pip install graceful-end" in readme


def test_python_m_graceful_is_a_shim() -> None:
    source = (ROOT / "src" / "graceful" / "__main__.py").read_text()
    code = [line for line in source.splitlines() if line and not line.startswith(('"', "#"))]
    assert code == ["import sys", "from graceful._cli import main", "sys.exit(main())"]


def test_import_graceful_imports_no_cli_and_no_metadata() -> None:
    code = (
        "import sys, graceful\n"
        "mods = ('graceful._cli', 'argparse', 'importlib.metadata', 'subprocess', 'ctypes',"
        " 'asyncio')\n"
        "print([m for m in mods if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert out.stdout.strip() == "[]"


def test_import_graceful_imports_no_logging() -> None:
    code = "import sys, graceful; print('logging' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert out.stdout.strip() == "False"
