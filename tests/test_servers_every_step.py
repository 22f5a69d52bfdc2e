"""Issue 22: the path a signal takes under a server that owns the signals (a ``Stopper`` in front
of the server's own stop) loses no signal at any step.

As tests/test_every_step.py does for a guard: a tracer in a forked child counts the line events in
graceful's code and sends SIGTERM to its own process at the k-th one, for every k, from the
moment the stopper is installed (``graceful.integrations.stopping``) through the block and the
restore (@main's own ending after that is tests/test_every_step.py's). Every run must end by
SIGTERM, print no traceback, stop the "server" at most once and run the cleanup exactly once.
"""

from __future__ import annotations

import json
import signal

import pytest

from helpers import run_script

SCENARIO = r"""
import json, os, signal, sys, threading
import graceful
from graceful.integrations import stopping

GRACEFUL = os.path.dirname(graceful.__file__)
DRAIN = float(sys.argv[1])


def scenario(k, log):
    count = [0]

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(GRACEFUL):
            return None
        if event == "line":
            count[0] += 1
            if count[0] == k:
                where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
                log("at", where, frame.f_code.co_name)
                os.kill(os.getpid(), signal.SIGTERM)
        return tracer

    @graceful.main(drain=DRAIN)
    def main():
        graceful.register(log, "global")
        stopped = threading.Event()
        sys.settrace(tracer)
        with stopping(lambda sig: (log("stop", sig), stopped.set())):
            log("serving")
            stopped.wait(0.2 + DRAIN)  # the server: serves until it is told to stop
        sys.settrace(None)  # what follows is @main's own ending: tests/test_every_step.py
        log("server returned")
        return 0

    main()


def run(k):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        def log(*words):
            os.write(w, (json.dumps(words) + "\n").encode())
        code = 0
        try:
            scenario(k, log)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException as exc:
            log("escaped", type(exc).__name__, str(exc))
            code = 1
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    lines = [json.loads(x) for x in b"".join(chunks).decode().splitlines()]
    return os.waitstatus_to_exitcode(status), lines


results = []
k = 1
while True:
    code, lines = run(k)
    results.append([k, code, lines])
    if code != -signal.SIGTERM or k > 5000:
        break  # the first k past the end of graceful's code: no signal was sent
    k += 1
print(json.dumps(results))
"""


@pytest.mark.parametrize(
    "drain",
    [
        0.0,  # the stopper stops the server from the signal handler itself
        0.05,  # from the machine's drain_end listener (the watcher thread)
    ],
)
def test_a_signal_at_every_step_of_a_stopper_ends_by_it(tmp_path: object, drain: float) -> None:
    script = tmp_path / "every_step_stopper.py"  # type: ignore[operator]
    script.write_text(SCENARIO)
    rc, out, err = run_script([str(script), str(drain)], timeout=240)
    assert rc == 0, err
    assert "Traceback" not in err, err
    *signalled, (last_k, last_code, last_lines) = json.loads(out)
    assert last_code == 0, (last_k, last_lines)  # no signal: served, returned, cleaned up
    assert ["global"] in last_lines, last_lines
    assert len(signalled) >= 20, "the tracer saw too few steps: is it tracing graceful?"
    for k, code, lines in signalled:
        what = [line[0] for line in lines]
        assert code == -signal.SIGTERM, (k, lines)
        assert "escaped" not in what, (k, lines)
        assert what.count("stop") <= 1, (k, lines)
        assert what.count("global") == 1, (k, lines)  # the signal came inside the guard
