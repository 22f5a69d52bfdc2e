"""The program's stdout and stderr, read line by line in threads, so lines can be waited for."""

from __future__ import annotations

import re
import threading
from typing import IO, NamedTuple, Optional, Union

#: A readiness or trigger line: a str is one whole line, exactly; a compiled pattern is searched.
LinePattern = Union[str, "re.Pattern[str]"]


class Line(NamedTuple):
    stream: str  # "stdout" or "stderr"
    text: str  # without the line ending


class Matcher:
    """A line to wait for: a str is one whole line, exactly; a compiled pattern is searched."""

    def __init__(self, pattern: LinePattern) -> None:
        if isinstance(pattern, str):
            self.regex = re.compile(re.escape(pattern))
            self.whole = True
            self.description = f"a line equal to {pattern!r}"
            self.text: Optional[str] = pattern
        elif isinstance(pattern, re.Pattern):
            self.regex = pattern
            self.whole = False
            self.description = f"a line matching re.compile({pattern.pattern!r})"
            self.text = None
        else:
            raise TypeError(
                "a line to wait for is a str (one whole line) or a compiled pattern "
                f"(re.compile(...)), not {type(pattern).__name__}"
            )

    def __call__(self, text: str) -> Optional[re.Match[str]]:
        return self.regex.fullmatch(text) if self.whole else self.regex.search(text)

    def near_miss(self, lines: list[Line]) -> Optional[str]:
        """A hint when a line is the str but for what a whole-line match cannot ignore.

        Whole-line matching is the rule, so a near miss is judged on whole lines too: the line
        equals the str but for spaces or case, or it is the str preceded by a prefix (a log
        format's ``INFO: ready``) or followed by more words (``ready on port 80``), each at a
        word boundary. A line that merely contains the str (a path in a traceback) is no hint.
        """
        if self.text is None or not self.text.strip():
            return None
        wanted = self.text.strip()
        edge = re.compile(
            rf"(?:.*\W)?{re.escape(wanted)}|{re.escape(wanted)}(?:\W.*)?", re.IGNORECASE
        )
        for line in lines:
            if edge.fullmatch(line.text.strip()):
                return (
                    f"the {line.stream} line {line.text!r} is close to {self.text!r} but a str "
                    "must equal the whole line: pass re.compile(...) to search within lines"
                )
        return None


class Output:
    """Collects both streams; every new line notifies ``cond``."""

    def __init__(self, cond: threading.Condition, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self.cond = cond
        self.lines: list[Line] = []
        self.text = {"stdout": [], "stderr": []}  # type: dict[str, list[str]]
        self._threads = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", stdout), ("stderr", stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                text = raw.decode(errors="replace")
                with self.cond:
                    self.text[name].append(text)
                    self.lines.append(Line(name, text.rstrip("\r\n")))
                    self.cond.notify_all()

    def find(self, matcher: Matcher, start: int) -> Optional[tuple[int, re.Match[str]]]:
        """The first line at index ``start`` or later that matches (call with ``cond`` held)."""
        for index in range(start, len(self.lines)):
            match = matcher(self.lines[index].text)
            if match:
                return index, match
        return None

    def join(self, timeout: float) -> bool:
        """Wait until both streams are at their end; False if a process still holds one open."""
        for thread in self._threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def stdout(self) -> str:
        with self.cond:
            return "".join(self.text["stdout"])

    def stderr(self) -> str:
        with self.cond:
            return "".join(self.text["stderr"])
