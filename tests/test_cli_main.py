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
    # A plain script, not an entry point: pip's entry-point wrapper imports re (a third of
    # `graceful run`'s start-up); the script imports nothing but the CLI.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'script-files = ["bin/graceful"]' in pyproject
    assert "[project.scripts]" not in pyproject
    source = (ROOT / "bin" / "graceful").read_text()
    assert source.startswith("#!python\n")
    assert "from graceful._cli import main" in source
    assert "import re" not in source
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


# --- graceful run's options, read without argparse -------------------------------------------

#: Forms that graceful run reads itself (no argparse, no typing at start-up): each must give what
#: argparse gives.
USUAL_RUN_FORMS = [
    ["--", "true"],
    ["--", "--", "x"],
    ["-g", "-v", "-v", "--", "sh", "-c", "exit 3"],
    ["--group", "--quiet", "--", "x", "-v", "--group"],
    ["-s", "TERM,INT", "--stop-signals=TERM", "-m", "TERM:QUIT", "--map=HUP:USR1", "--", "x"],
    ["--signals", "HUP INT", "--signals", "USR1", "--", "x"],
    ["-t", "2.5", "--orphan-timeout", "none", "--die-with-parent", "--parent-pid", "1", "--", "x"],
    ["--timeout=never", "--no-subreaper", "--own-group", "--report-fd", "9", "--", "x"],
    ["--executable", "/bin/sh", "--executable=/bin/true", "--", "sh"],
    ["--quiet", "--timeout", "0", "--map", "TERM:9", "--", "x"],
]
#: Forms left to argparse: whatever it makes of them (an option, an error) stays its own.
UNUSUAL_RUN_FORMS = [
    ["true"],
    ["-gv", "--", "x"],
    ["-t5", "--", "x"],
    ["-s=TERM", "--", "x"],
    ["--time", "5", "--", "x"],
    ["--group=1", "--", "x"],
    ["-t", "-1", "--", "x"],
    ["--timeout=", "--", "x"],
    ["-s", "--", "x"],
    ["-s", "KILL", "-s", "TERM", "--", "x"],
    ["--map", "TERM", "--", "x"],
    ["-v", "-q", "--", "x"],
    ["--map", "TERM:QUIT", "--map", "TERM:INT", "--", "x"],
    ["--signals", "HUP", "--stop-signals", "TERM", "--", "x"],
    ["--parent-pid", "one", "--", "x"],
    ["--signals", "RTMAX", "--die-with-parent", "--", "x"],
    ["--help"],
    ["--"],
    ["-v"],
]


def _by_argparse(words: list[str]) -> object:
    from graceful._cli import _argparse_run, parser

    top = parser()
    return _argparse_run(top, top.parse_args(words))


@pytest.mark.parametrize("args", USUAL_RUN_FORMS)
def test_run_reads_its_usual_forms_itself_exactly_as_argparse_does(args: list[str]) -> None:
    from graceful._cli import _read_run

    opts = _read_run(args)
    assert opts is not None
    assert opts == _by_argparse(["run", *args])


@pytest.mark.parametrize("args", UNUSUAL_RUN_FORMS)
def test_run_leaves_every_other_form_to_argparse(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from graceful._cli import _read_run, read_run_options

    assert _read_run(args) is None
    try:
        expected = _by_argparse(["run", *args])
    except SystemExit as exc:
        expected = ("exit", exc.code, capsys.readouterr())
    try:
        got = read_run_options(["run", *args])
    except SystemExit as exc:
        got = ("exit", exc.code, capsys.readouterr())  # type: ignore[assignment]
    assert got == expected


def test_run_starts_without_argparse_typing_ctypes_or_warnings() -> None:
    """What graceful run -- true imports, in the supervisor and in the child before exec."""
    code = (
        "import sys; sys.argv = ['graceful', 'run', '--', 'true']\n"
        "from graceful._cli import main; main()"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "graceful._cli.run" in imported
    costly = {"argparse", "typing", "ctypes", "contextlib", "warnings", "gettext", "shutil", "math"}
    assert imported & costly == set()


def test_run_as_the_command_still_runs_atexit_functions() -> None:
    code = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: os.write(2, b'atexit ran'))\n"
        "sys.argv = ['graceful', 'run', '--', 'sh', '-c', 'exit 4']\n"
        "from graceful._cli import main\n"
        "sys.exit(main())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert out.returncode == 4
    assert out.stderr == b"atexit ran"
