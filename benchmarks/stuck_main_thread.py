"""How long a guarded process takes to end after SIGTERM, by what its main thread is doing.

Run: python benchmarks/stuck_main_thread.py. Not part of the test suite. The baseline is the main
thread in time.sleep(), measured in the same run; every other case is printed as a ratio to it
(or as "still running" when the process had not ended WAIT seconds after the signal).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

WAIT = 4.0
CASES = {
    "time.sleep(60)  [baseline]": "time.sleep(60)",
    "catastrophic regex": 're.match(r"(a+)+$", "a" * 40 + "b")',
    "sqlite3 endless query + register_break(interrupt)": "SQLITE",
    "sum(range(10**11))  [C, GIL held]": "sum(range(10**11))",
}
SQLITE = """
conn = sqlite3.connect(":memory:", check_same_thread=False)
graceful.register_break(conn.interrupt)
conn.create_function("ready", 0, lambda: print("ready", flush=True) or 1)
"""


def measure(body: str) -> float | None:
    setup = SQLITE if body == "SQLITE" else ""
    if body == "SQLITE":
        body = (
            'conn.execute("WITH RECURSIVE c(x) AS (SELECT ready() UNION ALL SELECT x+1 FROM c) '
            'SELECT count(*) FROM c").fetchone()'
        )
    else:
        body = 'print("ready", flush=True)\n    ' + body
    code = textwrap.dedent(f"""
import re, sqlite3, time, graceful
{setup}
with graceful.guard(timeout=1):
    {body}
""")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.2)  # let the main thread get into the call: this is a measurement, not a test
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
        return time.monotonic() - start
    except subprocess.TimeoutExpired:
        return None
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    results = {name: measure(body) for name, body in CASES.items()}
    baseline = next(iter(results.values())) or 1e-9
    print(f"{'main thread is in':55} {'ended after':>12} {'ratio':>8}")
    for name, seconds in results.items():
        if seconds is None:
            print(f"{name:55} {'still running':>12} {'-':>8}")
        else:
            print(f"{name:55} {seconds * 1000:10.1f}ms {seconds / baseline:8.1f}x")


if __name__ == "__main__":
    main()
