"""A program that writes the shutdown timeline itself, in the documented format, without graceful.

It stands in for graceful's own writer in the tests of the timeline reader: on SIGTERM it records
the signal, runs the cleanups named on its command line (a name ending in "!" raises), records the
end and dies by SIGTERM. ``--fork`` starts a child that writes its own records too;
``--garbage`` appends a line that is not JSON.
"""

import json
import os
import signal
import sys
import time

PATH = os.environ["GRACEFUL_TIMELINE"]
T0 = 0.0


def record(event, **fields):
    line = json.dumps({"event": event, "t": time.monotonic() - T0, "pid": os.getpid(), **fields})
    fd = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def shut_down(signum, frame):
    global T0
    T0 = time.monotonic()
    record("signal", signal=signal.Signals(signum).name, signum=signum)
    for name in reversed([a for a in sys.argv[1:] if not a.startswith("--")]):
        start = time.monotonic()
        failed = name.endswith("!")
        record(
            "cleanup",
            name=name.rstrip("!"),
            duration=time.monotonic() - start,
            ok=not failed,
            error="ValueError: boom" if failed else None,
        )
    record(
        "end",
        how="reraise",
        signal=signal.Signals(signum).name,
        exit_code=None,
        total=time.monotonic() - T0,
    )
    if "--garbage" in sys.argv:
        with open(PATH, "a") as f:
            f.write("not json\n")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


signal.signal(signal.SIGTERM, shut_down)
if "--fork" in sys.argv:
    child = os.fork()
    if child == 0:
        record("cleanup", name="child.close", duration=0.0, ok=True, error=None)
        os._exit(0)
    os.waitpid(child, 0)
print("ready", flush=True)
while True:
    time.sleep(60)
