"""The shutdown timeline: JSON lines that graceful appends to the file ``GRACEFUL_TIMELINE`` names.

Each process running graceful appends one JSON object per line with a single ``O_APPEND`` write,
so records from several processes never interleave. Every record has ``event``, ``t`` (seconds
since that process's first signal, or since its cleanups began) and ``pid``; the other fields
depend on the event (docs/testing.md lists them).
"""

from __future__ import annotations

import json
from typing import Any

#: The environment variable that names the file.
ENV = "GRACEFUL_TIMELINE"


def parse(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The records in ``text``, in file order, and a note for each line that is not one."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number} is not JSON ({exc}): {line[:200]!r}")
            continue
        if not isinstance(record, dict) or not {"event", "t", "pid"} <= record.keys():
            problems.append(f"line {number} lacks event, t or pid: {line[:200]!r}")
            continue
        records.append(record)
    return records, problems


def read(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse(f.read())
    except FileNotFoundError:
        return [], []


def _seconds(value: Any) -> str:
    return f"{value:.3f} s" if isinstance(value, (int, float)) else "? s"


def format_record(record: dict[str, Any]) -> str:
    """One record as one line of text, for failure messages; never raises."""
    event = record.get("event")
    t = record.get("t")
    when = f"+{t:.3f}" if isinstance(t, (int, float)) else "?"
    head = f"{when:>8} s  [{record.get('pid')}]"
    if event == "signal":
        text = f"signal {record.get('signal')}"
    elif event == "second_signal":
        text = f"second signal {record.get('signal')} ({record.get('action')})"
    elif event in ("drain_start", "drain_end"):
        text = event.replace("_", " ")
    elif event == "breaks_done":
        text = "break callbacks done"
    elif event == "cleanup":
        outcome = "ok" if record.get("ok") else f"FAILED: {record.get('error')}"
        text = f"cleanup {record.get('name')}: {outcome} ({_seconds(record.get('duration'))})"
    elif event == "backend":
        text = (
            f"backend pid {record.get('backend_pid')}: {record.get('how')} "
            f"({_seconds(record.get('duration'))})"
        )
    elif event == "end":
        text = f"end: {record.get('how')}"
        if record.get("signal"):
            text += f" {record['signal']}"
        if record.get("exit_code") is not None:
            text += f", status {record['exit_code']}"
        text += f", total {_seconds(record.get('total'))}"
    else:
        rest = {k: v for k, v in record.items() if k not in ("event", "t", "pid")}
        text = f"{event} {json.dumps(rest)}"
    return f"{head}  {text}"


def name_matches(name: object, wanted: str) -> bool:
    """``wanted`` is the whole qualified name or a dotted suffix of it: ``close_db`` matches
    ``app.close_db`` and ``main.<locals>.close_db``, not ``app.reclose_db``."""
    return isinstance(name, str) and (name == wanted or name.endswith("." + wanted))
