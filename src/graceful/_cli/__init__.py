"""The ``graceful`` command: ``run``, ``signals``, ``doctor``, ``demo`` and ``docs``.

Only the argparse set-up lives here; each subcommand is a module of its own, imported when it is
chosen. ``import graceful`` never imports this package.

``graceful run [options] -- COMMAND``, the form that ``graceful.spawn(supervise=True)``, container
entry points and scripts use, is read without argparse (:func:`_read_run`): importing argparse and
building the parser would add about 6 ms to the supervisor's start-up, and ``typing`` 2.5 ms
more, so neither is imported on that path. Anything else, ``--help``, every error and every
unusual form included, goes to argparse, so what the user sees is argparse's in every case.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs the supervisor's start-up time; annotations are strings here
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, NoReturn, Optional, TypeVar

    from .run_options import Options

    _T = TypeVar("_T")

DESCRIPTION = """\
End programs well. `graceful run` supervises any command (signals forwarded, zombies reaped,
nothing left behind); `graceful signals` and `graceful doctor` explain signals on this machine;
`graceful demo` shows the library at work; `graceful docs` prints the documentation."""

RUN_EPILOG = """\
The command leads its own process group and dies with the supervisor, even if the supervisor is
SIGKILLed (PR_SET_PDEATHSIG). The supervisor is a subreaper: what the command leaves behind,
daemons included, is adopted, told to stop and, after --timeout, killed. It ends as the command
did: with its exit code, or killed by the same signal. Details: `graceful docs cli`."""


def _checked(parse: Callable[[str, str], _T], what: str) -> Callable[[str], _T]:
    """An argparse ``type=`` that keeps our error message instead of "invalid value"."""

    def convert(text: str) -> _T:
        import argparse

        try:
            return parse(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None

    return convert


def _valid(parse: Callable[[str, str], object]) -> Callable[[str, str], str]:
    """Check the text with ``parse`` now, keep it as text (``run_options.build`` parses it)."""

    def check(text: str, what: str) -> str:
        parse(text, what)
        return text

    return check


def _int(text: str, what: str) -> int:
    return int(text)


def parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand with its own --help."""
    import argparse

    from .._version import __version__
    from . import run_options as ro

    top = argparse.ArgumentParser(
        prog="graceful", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"graceful {__version__}")
    sub = top.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="supervise a command: forward signals, reap zombies, leave nothing behind",
        description="Run COMMAND under a supervisor, as tini and dumb-init do.",
        usage="graceful run [options] -- COMMAND [ARGS...]",
        epilog=RUN_EPILOG,
    )
    run.set_defaults(usage_of=run)
    run.add_argument(
        "-s",
        "--signals",
        metavar="LIST",
        type=_checked(_valid(ro.parse_signal_list), "--signals"),
        help=f"signals to forward (default: {','.join(ro.DEFAULT_FORWARD)}); others are dropped",
    )
    run.add_argument(
        "-g",
        "--group",
        action="store_true",
        help="forward to the command's whole process group, not only to the command",
    )
    run.add_argument(
        "-m",
        "--map",
        metavar="FROM:TO",
        action="append",
        default=[],
        type=_checked(_valid(ro.parse_map), "--map"),
        help="send TO when FROM arrives, e.g. TERM:QUIT (repeatable)",
    )
    run.add_argument(
        "-t",
        "--timeout",
        metavar="SECONDS",
        type=_checked(ro.parse_timeout, "--timeout"),
        default=ro.DEFAULT_TIMEOUT,
        help=(
            f"after a stop signal, SIGKILL whatever is still running (default: "
            f"{ro.DEFAULT_TIMEOUT:g}, below docker's 10; 'none': never)"
        ),
    )
    run.add_argument(
        "--grace",
        metavar="SECONDS",
        type=_checked(ro.parse_seconds, "--grace"),
        help=(
            "the whole stop budget from the first stop signal (drain included): the tree is "
            "SIGKILLed at its end less --margin; passed down in GRACEFUL_DEADLINE (replaces "
            "--timeout)"
        ),
    )
    run.add_argument(
        "--drain",
        metavar="SECONDS",
        type=_checked(ro.parse_seconds, "--drain"),
        default=0.0,
        help="hold the first stop signal this long before forwarding it (not ready meanwhile)",
    )
    run.add_argument(
        "--margin",
        metavar="SECONDS",
        type=_checked(ro.parse_seconds, "--margin"),
        default=ro.DEFAULT_MARGIN,
        help=f"with --grace: SIGKILL this long before its end (default: {ro.DEFAULT_MARGIN:g})",
    )
    run.add_argument(
        "--ready-file",
        metavar="FILE",
        type=_checked(ro.parse_path, "--ready-file"),
        help="exists while the command runs and is not draining (a readiness probe's test -f)",
    )
    run.add_argument(
        "--report",
        metavar="FILE",
        type=_checked(ro.parse_path, "--report"),
        help="append a JSON receipt of the stop to FILE (GRACEFUL_REPORT for the command too)",
    )
    run.add_argument(
        "--stop-signals",
        metavar="LIST",
        type=_checked(_valid(ro.parse_signal_list), "--stop-signals"),
        help=(
            f"signals that start the --timeout countdown (default: {','.join(ro.DEFAULT_STOP)}); "
            "the others (HUP, USR1: 'reload') are only forwarded"
        ),
    )
    run.add_argument(
        "--die-with-parent",
        action="store_true",
        help="when this supervisor's parent dies, stop the command and all it started",
    )
    run.add_argument(
        "--orphan-timeout",
        metavar="SECONDS",
        type=_checked(ro.parse_timeout, "--orphan-timeout"),
        default=ro.DEFAULT_ORPHAN_TIMEOUT,
        help=(
            "with --die-with-parent: the grace period once the parent is gone "
            f"(default: {ro.DEFAULT_ORPHAN_TIMEOUT:g})"
        ),
    )
    run.add_argument(
        "--no-subreaper",
        dest="subreaper",
        action="store_false",
        help="do not adopt orphaned descendants (they go to init and outlive the supervisor)",
    )
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="count", default=0, help="say what it does")
    talk.add_argument("-q", "--quiet", action="store_true", help="no notices, only errors")
    # For graceful.spawn(supervise=True): not part of the documented interface.
    hidden = argparse.SUPPRESS
    run.add_argument("--parent-pid", type=_checked(_int, "--parent-pid"), help=hidden)
    run.add_argument("--report-fd", type=_checked(_int, "--report-fd"), help=hidden)
    run.add_argument("--own-group", action="store_true", help=hidden)
    run.add_argument("--executable", help=hidden)
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help=hidden)

    signals = sub.add_parser(
        "signals",
        help="this platform's signals, and what graceful does with each",
        description=(
            "Print every signal of this platform: number, name, default action, whether it can "
            "be caught, who typically sends it, and what graceful does with it."
        ),
    )
    signals.add_argument(
        "--format", choices=("text", "markdown"), default="text", help="default: text"
    )
    signals.set_defaults(usage_of=signals)

    doctor = sub.add_parser(
        "doctor",
        help="why a program may not end well here",
        description=(
            "Look at how this process was started: inherited ignored or blocked signals, PID 1, "
            "subreaper, systemd, containers, and the stop timeouts that apply."
        ),
    )
    doctor.set_defaults(usage_of=doctor)

    demo = sub.add_parser(
        "demo",
        help="watch a worker with a SQLite database and a backend end well",
        description=(
            "A worker writes to a SQLite database file in transactions and feeds a backend over "
            "a pipe; the demo signals it mid-transaction and shows each step of the ending, then "
            "checks that the database is intact and that no process is left."
        ),
    )
    demo.set_defaults(usage_of=demo)
    which = demo.add_mutually_exclusive_group()
    which.add_argument(
        "--signal",
        metavar="NAME",
        default="TERM",
        type=_checked(_demo_signal, "--signal"),
        help="the signal to send the worker (default: TERM; try INT, HUP, QUIT, USR1)",
    )
    which.add_argument(
        "--kill",
        action="store_true",
        help="SIGKILL the worker instead: no cleanup runs, yet the backend dies, the data holds",
    )

    docs = sub.add_parser(
        "docs",
        help="print a topic of the documentation (paged on a terminal)",
        description=(
            "Without TOPIC: list the topics. With one: print it, through $PAGER (or less) when "
            "the output is a terminal, plain otherwise. The same text as the docs/ folder of the "
            "source."
        ),
    )
    docs.set_defaults(usage_of=docs)
    docs.add_argument("topic", nargs="?", metavar="TOPIC", help="a topic, as the list names it")
    return top


def _demo_signal(text: str, what: str) -> str:
    """``graceful demo --signal``: a signal the worker's guard handles (checked, kept as text)."""
    from .._core import signals as _signals

    try:
        _signals.resolve(text, what)
    except ValueError as exc:
        hint = " (to see SIGKILL, use --kill)" if "KILL" in text.upper() else ""
        raise ValueError(f"{exc}{hint}") from None
    return text


def parse(top: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """``top.parse_args(words)``, except that words a subcommand does not know are reported with
    that subcommand's usage, not the top-level one."""
    args, unknown = top.parse_known_args(words)
    if unknown:
        args.usage_of.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


#: ``graceful run`` options without a value, as argparse stores them: (keyword, value); None
#: for a count (``-v``).
_RUN_FLAGS: dict[str, tuple[str, object]] = {
    "-g": ("group", True),
    "--group": ("group", True),
    "--die-with-parent": ("die_with_parent", True),
    "--no-subreaper": ("subreaper", False),
    "-v": ("verbose", None),
    "--verbose": ("verbose", None),
    "-q": ("quiet", True),
    "--quiet": ("quiet", True),
    "--own-group": ("own_group", True),
}
#: ``graceful run`` options with a value: the keyword they set.
_RUN_VALUES = {
    "-s": "signals",
    "--signals": "signals",
    "-m": "maps",
    "--map": "maps",
    "-t": "timeout",
    "--timeout": "timeout",
    "--stop-signals": "stop_signals",
    "--orphan-timeout": "orphan_timeout",
    "--parent-pid": "parent_pid",
    "--report-fd": "report_fd",
    "--executable": "executable",
    "--grace": "grace",
    "--drain": "drain",
    "--margin": "margin",
    "--ready-file": "ready_file",
    "--report": "report",
}


def _read_run(args: list[str]) -> Optional[Options]:
    """``graceful run``'s options, read without argparse where that is certain to read them as
    argparse would: whole option words (``-t 5``, ``--timeout 5``, ``--timeout=5``, ``-v``), then
    ``--``, then the command. None for anything else (``--help``, an abbreviation, ``-gv``,
    ``-t5``, a value that starts with ``-``, no ``--``) and for any value argparse or
    ``run_options.build`` would refuse: argparse then reads the line, so every error message and
    every unusual form stays exactly argparse's."""
    from . import run_options as ro

    values: dict[str, object] = {"maps": [], "verbose": 0}
    i = 0
    while i < len(args) and args[i] != "--":
        word = args[i]
        i += 1
        flag = _RUN_FLAGS.get(word)
        if flag is not None:
            key, value = flag
            values[key] = values[key] + 1 if value is None else value  # type: ignore[operator]
            continue
        name, equals, text = word.partition("=")
        option = _RUN_VALUES.get(name if equals and name.startswith("--") else word)
        if not equals and option is not None and i < len(args):
            name, text = word, args[i]
            i += 1
        if option is None or not text or text.startswith("-"):
            # Not an option word we read, or a value argparse may take for an option (or a
            # negative number): argparse's turn.
            return None
        try:
            _set_run_value(values, option, text, name, ro)
        except ValueError:
            return None
    if i == len(args):
        return None  # no "--": the command may hold words argparse reads as options
    if values.get("quiet") and values["verbose"]:
        return None  # contradictory: argparse refuses it
    maps = values.pop("maps")
    try:
        _refuse_conflicts(values.get("signals"), values.get("stop_signals"), maps)  # type: ignore[arg-type]
        return ro.build(args[i:], maps=tuple(maps), **values)  # type: ignore[arg-type]
    except ValueError:
        return None


def _refuse_conflicts(signals: Optional[str], stop_signals: Optional[str], maps: list[str]) -> None:
    """Options that contradict each other (raise ValueError saying which): one signal mapped to
    two, or a stop signal that is never forwarded."""
    from . import run_options as ro

    mapped: dict[int, str] = {}
    for text in maps:
        source, _ = ro.parse_map(text)
        if source in mapped and mapped[source] != text:
            raise ValueError(
                f"--map {mapped[source]} and --map {text} map the same signal twice: keep one"
            )
        mapped[source] = text
    if stop_signals is None:
        return
    forwarded = set(ro.parse_signal_list(",".join(ro.DEFAULT_FORWARD), "--signals"))
    if signals is not None:
        forwarded = set(ro.parse_signal_list(signals, "--signals"))
    dropped = ro.parse_signal_list(stop_signals, "--stop-signals") - forwarded - set(mapped)
    if dropped:
        from .._core import signals as _signals

        names = ", ".join(sorted(_signals.name(sig)[3:] for sig in dropped))
        raise ValueError(
            f"--stop-signals: {names} would start the countdown, but the supervisor drops it "
            "without forwarding it (not in --signals): add it to --signals, or leave it out of "
            "--stop-signals"
        )


def _set_run_value(values: dict[str, object], key: str, text: str, name: str, ro: Any) -> None:
    """Check ``text`` as argparse's ``type=`` for the option does (raise ValueError), and store
    what argparse would store."""
    if key in ("signals", "stop_signals"):
        ro.parse_signal_list(text, name)  # checked now, parsed again by build()
    elif key == "maps":
        ro.parse_map(text, name)
        values[key].append(text)  # type: ignore[attr-defined]
        return
    elif key in ("timeout", "orphan_timeout"):
        values[key] = ro.parse_timeout(text, name)
        return
    elif key in ("grace", "drain", "margin"):
        values[key] = ro.parse_seconds(text, name)
        return
    elif key in ("ready_file", "report"):
        ro.parse_path(text, name)
    elif key in ("parent_pid", "report_fd"):
        values[key] = int(text)
        return
    values[key] = text


def _exit_now(code: int) -> NoReturn:
    """End the supervisor's process with ``code`` as the interpreter would, without tearing the
    interpreter down (1 to 2 ms): the ``atexit`` functions run and the standard streams are
    flushed first. Only where ``graceful run`` owns the process: the command line, not a call."""
    atexit = sys.modules.get("atexit")  # not imported: nothing can have been registered
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is not None:
        run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def read_run_options(words: list[str]) -> Options:
    """The options of ``graceful WORDS`` (``run`` first): read by :func:`_read_run` if it can,
    else by argparse, which exits with its message on an error (and for ``--help``)."""
    opts = _read_run(words[1:]) if words[:1] == ["run"] else None
    if opts is None:
        top = parser()
        opts = _argparse_run(top, parse(top, words))
    return opts


def _argparse_run(top: argparse.ArgumentParser, args: argparse.Namespace) -> Options:
    from . import run_options as ro

    run: argparse.ArgumentParser = args.usage_of
    command = list(args.command)
    if command in ([], ["--"]):
        run.error("no command given: write it after --, as in `graceful run -- myserver --port 80`")
    try:
        _refuse_conflicts(args.signals, args.stop_signals, list(args.map))
        return ro.build(
            command,
            signals=args.signals,
            stop_signals=args.stop_signals,
            maps=tuple(args.map),
            executable=args.executable,
            group=args.group,
            timeout=args.timeout,
            orphan_timeout=args.orphan_timeout,
            subreaper=args.subreaper,
            die_with_parent=args.die_with_parent,
            parent_pid=args.parent_pid,
            report_fd=args.report_fd,
            own_group=args.own_group,
            verbose=args.verbose,
            quiet=args.quiet,
            grace=args.grace,
            drain=args.drain,
            margin=args.margin,
            ready_file=args.ready_file,
            report=args.report,
        )
    except ValueError as exc:
        run.error(str(exc))


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line; return the exit status."""
    words = sys.argv[1:] if argv is None else argv
    opts = _read_run(words[1:]) if words[:1] == ["run"] else None
    if opts is None:
        top = parser()
        args = parse(top, words)
        if args.subcommand == "run":
            opts = _argparse_run(top, args)
    if opts is not None:
        from . import run

        code = run.supervise(opts)
        if argv is None:
            _exit_now(code)  # graceful run owns this process: end it now, as the command ended
        return code
    try:
        return _show(args)
    except BrokenPipeError:
        # The reader went away (`graceful docs | head`): end as a Unix filter does, by SIGPIPE,
        # with nothing left to flush into the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        if argv is None:
            import signal

            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        return 128 + 13  # SIGPIPE's number on Linux


def _show(args: Any) -> int:
    """The sub-commands that print: signals, doctor, docs, demo."""
    if args.subcommand == "signals":
        import shutil

        from . import signals_table

        width = shutil.get_terminal_size((100, 24)).columns  # 100 when not a terminal
        print(signals_table.render(args.format, width=width), end="")
        return 0
    if args.subcommand == "doctor":
        from . import doctor

        return doctor.main()
    if args.subcommand == "docs":
        from . import docs

        return docs.main(args.topic, args.usage_of.error)
    from . import demo

    return demo.main(args.signal, kill=args.kill)
