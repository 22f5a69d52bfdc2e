"""The sweep's tracer: runs inside the program, counts its lines, signals it at one of them.

The sweep (``_sweep.py``) puts a ``sitecustomize.py`` first on the program's ``PYTHONPATH``; the
interpreter runs it at start-up, and it executes this file (never imported as part of graceful:
``import graceful`` in the program would change what it does) and calls :func:`bootstrap`. That
takes the sweep's settings from the file ``$GRACEFUL_SWEEP`` names, puts ``PYTHONPATH``,
``sys.path`` and ``sys.modules["sitecustomize"]`` back as they were (running the real
``sitecustomize``, if there is one), and starts tracing. Only this process is traced: the
environment its children inherit is the user's, and a forked child stops tracing.

Points are line events in the user's files: ``sys.monitoring`` on 3.12+ (every thread; a location
that does not count is disabled, so it costs nothing the next time), ``sys.settrace`` before
(``threading``'s trace hook for the threads the program starts). At the point, the tracer writes
``fired`` and the time to its report file, then sends the signal to its own process with
``os.kill``: the Python handler runs before the line does, as if the signal had arrived there.

Settings, one a line, fields separated by tabs: ``out PATH`` (the report file), ``root PATH``
(a directory or file whose code counts), ``exclude PATH``, ``lines FILE FIRST LAST`` and
``func NAME`` (``where=``: a line counts if it matches one), ``mode count``, ``fire SIGNUM FILE
LINE K`` (the K-th time LINE of FILE runs), ``then SIGNUM after N`` (the N-th line event in the
user's files after the previous signal), ``then SIGNUM line FILE LINE`` (its next run after the
previous signal), ``then 0 count`` (report each line event after the signal, send nothing),
``pythonpath VALUE`` (the user's, to put back).

Standard library only, and only ``os`` and ``sys`` before the first signal: the program must not
find modules it did not import.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing would be one more module the program did not import
if TYPE_CHECKING:
    from types import CodeType, FrameType
    from typing import Any, Callable, Optional

ENV = "GRACEFUL_SWEEP"
_TOOL_IDS = (4, 3, 5, 2)  # sys.monitoring: 0 debugger, 1 coverage are the usual claimants


class Tracer:
    """The state of the sweep inside the program."""

    def __init__(self, settings: dict[str, list[list[str]]]) -> None:
        self.out = os.open(settings["out"][0][0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.roots = tuple(r[0] for r in settings.get("root", []))
        self.excluded = tuple(r[0] for r in settings.get("exclude", []))
        self.lines = [(f, int(a), int(b)) for f, a, b in settings.get("lines", [])]
        self.funcs = [r[0] for r in settings.get("func", [])]
        self.counting = settings.get("mode", [["fire"]])[0][0] == "count"
        self.counts: dict[tuple[str, int], int] = {}
        fire = settings.get("fire", [])
        self.target: Optional[tuple[str, int]] = None
        self.k = 0
        if fire:
            signum, file, line, k = fire[0]
            self.target, self.k = (file, int(line)), int(k)
            self.signal = int(signum)
        self.seen = 0  # occurrences of the target so far
        self.thens = [(int(t[0]), t[1], t[2:]) for t in settings.get("then", [])]
        self.after = False  # the first signal went: count line events in the user's files
        self.after_count = 0
        self.done = False
        self.file_ok: dict[str, bool] = {}
        self.code_ok: dict[CodeType, bool] = {}
        self.tool: Optional[int] = None
        self.exits: Optional[tuple[int, frozenset[int]]] = None
        self.exit_cache: dict[tuple[CodeType, int], bool] = {}
        if sys.version_info >= (3, 11):
            import opcode

            calls = frozenset(opcode.opmap[n] for n in ("CALL", "PRECALL") if n in opcode.opmap)
            self.exits = (opcode.opmap["LOAD_CONST"], calls)
        self.threads_hooked = False
        #: Our sitecustomize, if there was no real one: forgotten once the program runs (not
        #: before: the import system looks it up in sys.modules when it has run).
        self.shim: Optional[object] = None

    def forget_shim(self) -> None:
        if sys.modules.get("sitecustomize") is self.shim:
            del sys.modules["sitecustomize"]
        self.shim = None

    # --- which lines count ---------------------------------------------------------------------

    def in_roots(self, filename: str) -> bool:
        ok = self.file_ok.get(filename)
        if ok is None:
            ok = any(
                filename == r or filename.startswith(r.rstrip("/") + "/") for r in self.roots
            ) and not any(filename.startswith(e) for e in self.excluded)
            self.file_ok[filename] = ok
        return ok

    def code_counts(self, code: CodeType) -> bool:
        """Before the first signal, does this code object hold lines that may count?"""
        ok = self.code_ok.get(code)
        if ok is None:
            filename = code.co_filename
            if self.target is not None and not self.counting:
                ok = filename == self.target[0]
            else:
                ok = self.in_roots(filename)
                if ok and self.funcs:
                    name = _name(code)
                    ok = any(name == f or name.endswith("." + f) for f in self.funcs) or any(
                        file == filename for file, _, _ in self.lines
                    )
            self.code_ok[code] = ok
        return ok

    def line_counts(self, code: CodeType, line: int) -> bool:
        if not self.lines and not self.funcs:
            return True
        filename = code.co_filename
        for file, first, last in self.lines:
            if file == filename and first <= line <= last:
                return True
        if self.funcs:
            name = _name(code)
            return any(name == f or name.endswith("." + f) for f in self.funcs)
        return False

    def with_exit(self, code: CodeType, offset: int) -> bool:
        """Is this line event the call of a ``with`` block's ``__exit__`` (3.11+)?

        From 3.11 the interpreter runs signal handlers only at calls, loops and function
        starts: not before this call, only once inside ``__exit__``. A handler run here (as the
        tracer's own ``os.kill`` would) is one no real signal can cause, so the point is left
        out. 3.9 and 3.10 check for signals at nearly every instruction: there it is real.
        """
        if self.exits is None:
            return False
        key = (code, offset)
        found = self.exit_cache.get(key)
        if found is None:
            load_const, calls = self.exits
            raw, consts = code.co_code, code.co_consts
            i, found = offset, True
            for _ in range(3):
                if i + 1 >= len(raw) or raw[i] != load_const or consts[raw[i + 1]] is not None:
                    found = False
                    break
                i += 2
            found = found and i + 1 < len(raw) and raw[i] in calls and raw[i + 1] == 2
            self.exit_cache[key] = found
        return found

    # --- events --------------------------------------------------------------------------------

    def event(self, code: CodeType, line: int, offset: int) -> bool:
        """One line event; False: this location never matters again (before the signal)."""
        if self.done:
            return False
        if self.after:
            if not self.in_roots(code.co_filename) or self.with_exit(code, offset):
                return False
            self.after_count += 1
            self.after_event(code, line)
            return True
        if not self.code_counts(code) or self.with_exit(code, offset):
            return False
        if self.shim is not None:
            self.forget_shim()
        return self.count(code, line) if self.counting else self.watch(code, line)

    def count(self, code: CodeType, line: int) -> bool:
        if not self.line_counts(code, line):
            return False
        key = (code.co_filename, line)
        count = self.counts.get(key, 0)
        if not count:
            self.say("seen", code.co_filename, str(line), _name(code))
        self.counts[key] = count + 1
        return True

    def watch(self, code: CodeType, line: int) -> bool:
        if (code.co_filename, line) != self.target:
            return False
        self.seen += 1
        if self.seen == self.k:
            self.fire(self.signal, code, line, self.k)
        return True

    def after_event(self, code: CodeType, line: int) -> None:
        signum, how, rest = self.thens[0]
        if how == "count":
            self.say("a")
        elif (how == "after" and self.after_count == int(rest[0])) or (
            how == "line" and code.co_filename == rest[0] and line == int(rest[1])
        ):
            self.fire(signum, code, line, self.after_count)

    def fire(self, signum: int, code: CodeType, line: int, k: int) -> None:
        import time

        self.say("fired", str(signum), repr(time.monotonic()), code.co_filename, str(line), str(k))
        if self.after:
            self.thens.pop(0)  # this was the next signal
        self.after = True
        self.after_count = 0
        if not self.thens:
            self.stop()
        elif self.tool is not None:
            sys.monitoring.restart_events()  # type: ignore[attr-defined]  # 3.12+
        else:
            self.rearm_settrace()
        os.kill(os.getpid(), signum)  # the Python handler runs in here, before the line

    def say(self, *fields: str) -> None:
        os.write(self.out, ("\t".join(fields) + "\n").encode(errors="surrogateescape"))

    def report_counts(self) -> None:
        for (filename, line), count in self.counts.items():
            self.say("count", filename, str(line), str(count))
        self.say("done")

    # --- tracing -------------------------------------------------------------------------------

    def start(self) -> None:
        monitoring: Any = getattr(sys, "monitoring", None)
        if monitoring is not None:
            for tool in _TOOL_IDS:
                try:
                    monitoring.use_tool_id(tool, "graceful.testing sweep")
                except ValueError:
                    continue
                self.tool = tool

                def on_line(code: CodeType, line: int, disable: Any = monitoring.DISABLE) -> Any:
                    offset = sys._getframe(1).f_lasti
                    return None if self.event(code, line, offset) else disable

                monitoring.register_callback(tool, monitoring.events.LINE, on_line)
                monitoring.set_events(tool, monitoring.events.LINE)
                break
        if self.tool is None:
            self.hook_threads()
            sys.settrace(self.on_call)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.stop)
        if self.counting:
            import atexit

            atexit.register(self.report_counts)

    def stop(self) -> None:
        self.done = True
        if self.tool is not None:
            sys.monitoring.set_events(self.tool, 0)  # type: ignore[attr-defined]  # 3.12+
        else:
            sys.settrace(None)

    def hook_threads(self) -> None:
        """``threading.settrace`` once ``threading`` is imported (before 3.12): its threads
        install ``threading._trace_hook`` when they start."""
        module = sys.modules.get("threading")
        if module is not None and getattr(module, "_trace_hook", 0) is None:
            module._trace_hook = self.on_call  # type: ignore[attr-defined]
            self.threads_hooked = True

    def on_call(self, frame: FrameType, event: str, arg: object) -> Optional[Callable[..., Any]]:
        if not self.threads_hooked:
            self.hook_threads()
        if self.done:
            return None
        wanted = self.in_roots(frame.f_code.co_filename) if self.after else None
        if wanted is None:
            wanted = self.code_counts(frame.f_code)
        return self.on_line if wanted else None

    def on_line(self, frame: FrameType, event: str, arg: object) -> Optional[Callable[..., Any]]:
        if self.done:
            return None
        if event == "line":
            self.event(frame.f_code, frame.f_lineno, frame.f_lasti)
        return self.on_line

    def rearm_settrace(self) -> None:
        """After the first signal, trace the user's frames already running; and if the handler
        raises out of the tracer (which turns ``sys.settrace`` off), trace again at the next
        call or return, through a one-shot profile function."""
        frame: Optional[FrameType] = sys._getframe(1)
        while frame is not None:
            if self.in_roots(frame.f_code.co_filename):
                frame.f_trace = self.on_line
            frame = frame.f_back

        def again(frame: FrameType, event: str, arg: object) -> None:
            sys.setprofile(None)
            if not self.done:
                sys.settrace(self.on_call)
                while frame is not None:
                    if self.in_roots(frame.f_code.co_filename):
                        frame.f_trace = self.on_line
                    frame = frame.f_back  # type: ignore[assignment]

        sys.setprofile(again)


def _name(code: CodeType) -> str:
    """The function's qualified name (3.11+), else its name."""
    return getattr(code, "co_qualname", code.co_name)


def read_settings(path: str) -> dict[str, list[list[str]]]:
    settings: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for raw in f.read().splitlines():
            key, *fields = raw.split("\t")
            settings.setdefault(key, []).append(fields)
    return settings


def bootstrap(shim: str) -> None:
    """Called by the sweep's ``sitecustomize.py`` (``shim``: its path) at start-up."""
    path = os.environ.pop(ENV, None)
    shim_dir = os.path.dirname(shim)
    settings = read_settings(path) if path else {}
    old = settings.get("pythonpath")
    if old:
        os.environ["PYTHONPATH"] = old[0][0]
    else:
        os.environ.pop("PYTHONPATH", None)
    sys.path[:] = [p for p in sys.path if p != shim_dir]
    ours = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401  # the real one
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        sys.modules["sitecustomize"] = ours  # type: ignore[assignment]  # the import ends
    else:
        ours = None
    if path:
        tracer = Tracer(settings)
        tracer.shim = ours
        tracer.start()
