"""The sweep's arguments, checked: which program, which of its lines, which signals.

Names each point's file as failures show it and reads its source line. Raises, at the call,
what the user must change (``where=``, ``then=``, ``only=``, an uncatchable signal).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import linecache
import os
import re
import signal as _signal
import sys
import sysconfig
import textwrap
from collections.abc import Sequence
from typing import Any, Optional, Union

from ._program import StrPath, check_one_program
from ._result import SignalLike, signal_name, to_signal

_WHOLE_FILE = 10**9

Where = Union[str, range, Sequence[Union[str, range]], None]
Then = Union[SignalLike, tuple[SignalLike, Union[int, str]], None]


# --- what the program is, and which of its files count -----------------------------------------


@dataclasses.dataclass
class Target:
    start: dict[str, Any]  # the keyword arguments of start(), but env and cwd
    roots: list[str]
    base: str  # the directory point names are relative to
    main: Optional[str]  # the file range(...) in where= means
    snippet: Optional[list[str]]  # the lines of a code= snippet


def find_target(
    script: Optional[StrPath],
    module: Optional[str],
    command: Union[str, Sequence[StrPath], None],
    code: Optional[str],
    cwd: Optional[str],
) -> Target:
    here = os.path.abspath(cwd or os.getcwd())
    check_one_program(script=script, module=module, command=command, code=code)
    if script is not None:
        path = os.path.join(here, os.fspath(script))
        base = os.path.dirname(os.path.abspath(path))
        return Target({"script": os.path.abspath(path)}, [base], base, os.path.abspath(path), None)
    if code is not None:
        snippet = textwrap.dedent(code)
        return Target({"code": code}, ["<string>"], here, "<string>", snippet.splitlines())
    if module is not None:
        top = module.split(".")[0]
        spec = importlib.machinery.PathFinder.find_spec(top, [here, *sys.path])
        if spec is None or not (spec.origin or spec.submodule_search_locations):
            raise ModuleNotFoundError(
                f"module={module!r}: no module {top!r} in cwd ({here}) or on sys.path; the sweep "
                "looks for it there to know which files are yours: pass where= a path",
                name=top,
            )
        locations = list(spec.submodule_search_locations or [])
        root = locations[0] if locations else os.path.dirname(str(spec.origin))
        main = spec.origin if not locations and spec.origin else None
        return Target({"module": module}, [root], os.path.dirname(root), main, None)
    argv = command.split() if isinstance(command, str) else [os.fspath(a) for a in command or ()]
    files = [a for a in argv[1:] if a.endswith(".py")]
    if not files:
        raise ValueError(
            "command= has no .py file to take as the program: sweep script=, module= or code=, "
            "or pass where= the file or directory whose lines to sweep"
        )
    path = os.path.abspath(os.path.join(here, files[0]))
    base = os.path.dirname(path)
    return Target({"command": command}, [base], base, path, None)


def excluded() -> list[str]:
    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # graceful
    return sorted(p.rstrip("/") + "/" for p in found)


def resolve_file(name: str, target: Target, cwd: str) -> str:
    if name == "<string>":
        return name
    if os.path.isabs(name):
        return os.path.normpath(name)
    for base in (target.base, *target.roots, cwd):
        candidate = os.path.normpath(os.path.join(base, name))
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(
        f"no file {name!r} under {target.base} or the cwd {cwd}: give a path relative to the "
        "program's directory, or an absolute one"
    )


_SPAN = re.compile(r"(\d+)(?:-(\d*))?")


def where_rules(
    where: Where, target: Target, cwd: str
) -> tuple[list[tuple[str, int, int]], list[str], list[str], str]:
    """The ``lines`` and ``func`` rules, the files outside the roots they add, and a text."""
    if where is None:
        return [], [], [], "each line of " + (target.base if target.snippet is None else "the code")
    items: list[Union[str, range]] = [where] if isinstance(where, (str, range)) else list(where)
    lines: list[tuple[str, int, int]] = []
    funcs: list[str] = []
    extra: list[str] = []
    texts: list[str] = []
    for item in items:
        if isinstance(item, range):
            if target.main is None or item.step != 1 or not item:
                raise ValueError(
                    f"where={item!r}: a range is lines of the program's own file (script= or "
                    "code=), step 1, not empty; name the file: where='app.py:10-30'"
                )
            lines.append((target.main, item.start, item.stop - 1))
            texts.append(f"lines {item.start}-{item.stop - 1}")
            continue
        if not isinstance(item, str) or not item:
            raise TypeError(
                "where= is a file ('app.py'), a line range ('app.py:10-30', range(10, 31)), a "
                f"function name ('main', 'Worker.run'), or a list of those; not {item!r}"
            )
        name, colon, span = item.rpartition(":")
        if not colon:
            name, span = item, ""
        if name.endswith(".py") or name == "<string>" or os.sep in name:
            file = resolve_file(name, target, cwd)
            lines.append((file, *_span(item, span)))
            if not any(file == r or file.startswith(r.rstrip("/") + "/") for r in target.roots):
                extra.append(file)
            texts.append(item)
        elif re.fullmatch(r"[A-Za-z_][\w.<>]*", item):
            funcs.append(item)
            texts.append(f"{item}()")
        else:
            raise ValueError(
                f"where={item!r} is neither a file ('app.py', 'app.py:10-30') nor a function "
                "name ('main', 'Worker.run')"
            )
    return lines, funcs, extra, "each line of " + ", ".join(texts)


def _span(item: str, span: str) -> tuple[int, int]:
    """The lines ``span`` names: "" the whole file, "42" one line, "10-30", "10-" to the end."""
    if not span:
        return 0, _WHOLE_FILE
    match = _SPAN.fullmatch(span)
    if match is None:
        raise ValueError(f"where={item!r}: after the file, a line (':42') or a range (':10-30')")
    first = int(match.group(1))
    return first, first if match.group(2) is None else int(match.group(2) or _WHOLE_FILE)


def parse_only(only: str, target: Target, cwd: str) -> tuple[str, int, int]:
    match = re.fullmatch(r"(.+):(\d+)#(\d+)", only)
    if match is None:
        raise ValueError(
            f"only={only!r}: a point as a failure names it, 'app.py:42#3' (file:line#occurrence)"
        )
    return resolve_file(match.group(1), target, cwd), int(match.group(2)), int(match.group(3))


def then_rule(then: Then, target: Target, cwd: str) -> Optional[tuple[int, list[str], str]]:
    """``then=`` as (signal, the tracer's settings after it, a text)."""
    if then is None:
        return None
    if not isinstance(then, tuple):
        number = catchable(then, "then=")
        return number, ["after", "1"], f"then {signal_name(number)} at the next line"
    if len(then) != 2:
        raise ValueError(
            "then= is a signal, (signal, line) or (signal, 'every'), e.g. ('INT', 'every')"
        )
    sig, at = then
    number = catchable(sig, "then=")
    if at == "every":
        return number, ["count"], f"then {signal_name(number)} at each line after it"
    if isinstance(at, int) and not isinstance(at, bool):
        if target.main is None:
            raise ValueError("then=(signal, LINE): name the file: (signal, 'app.py:42')")
        return number, ["line", target.main, str(at)], f"then {signal_name(number)} at line {at}"
    if isinstance(at, str):
        name, _, line = at.rpartition(":")
        if not line.isdigit():
            raise ValueError(f"then=(signal, {at!r}): a line is 42 or 'app.py:42', or 'every'")
        file = resolve_file(name, target, cwd)
        return number, ["line", file, line], f"then {signal_name(number)} at {at}"
    raise TypeError(f"then=: the second item is a line or 'every', not {at!r}")


def catchable(sig: SignalLike, what: str) -> int:
    number = to_signal(sig)
    if number in (_signal.SIGKILL, _signal.SIGSTOP):
        raise ValueError(
            f"{what}{signal_name(number)}: it cannot be caught, so nothing of the program runs "
            "after it; sweep a signal it handles (TERM, INT, HUP, ...)"
        )
    return number


def source_line(file: str, line: int, target: Target) -> str:
    if file == "<string>":
        lines = target.snippet or []
        return lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return linecache.getline(file, line).strip()


def shown_name(file: str, target: Target) -> str:
    if file == "<string>":
        return file
    relative = os.path.relpath(file, target.base)
    return file if relative.startswith("..") else relative
