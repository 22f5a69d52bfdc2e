"""Issue 9, defects 1 and 2: a signal at ANY step of a guard's entry or exit is handled.

A tracer in the child counts the line events inside graceful's own code and sends SIGTERM to its
own process at the k-th one, for every k until the block and its exit complete without one. Each
k runs in a forked grandchild of one prepared child (a fork costs a millisecond; a fresh
interpreter fifty), which reports what it logged and how it ended. Every run must end by SIGTERM,
print no traceback, run each cleanup at most once, and never reach the code after the block.
"""

from __future__ import annotations

import json
import signal
import sys

import pytest

from helpers import run_script

SCENARIOS = r'''
import json, os, select, signal, sys, threading, time
import graceful

GRACEFUL = os.path.dirname(graceful.__file__)
KIND = sys.argv[1]


def scenario(k, log):
    """Runs in a forked child; sends SIGTERM at the k-th line event in graceful's code."""
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

    graceful.register(log, "global")
    if KIND == "flat":
        with graceful.guard() as g:
            g.register(log, "block")
            sys.settrace(tracer)
        log("after", count[0])
    elif KIND == "nested":
        with graceful.guard() as outer:
            outer.register(log, "outer")
            with graceful.guard() as inner:
                inner.register(log, "inner")
                sys.settrace(tracer)
            log("after inner", count[0])
        log("after", count[0])
    elif KIND == "enter":
        sys.settrace(tracer)
        with graceful.guard() as g:
            g.register(log, "block")
            log("body", count[0])
        log("after", count[0])
    elif KIND == "main":
        @graceful.main
        def main():
            log("body", count[0])
            sys.settrace(tracer)
            return 0
        main()
    sys.settrace(None)
    log("returned", count[0])


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
    deadline = time.monotonic() + 60  # one k takes milliseconds: past this it hangs
    while True:
        if not select.select([r], [], [], max(0, deadline - time.monotonic()))[0]:
            os.kill(pid, signal.SIGKILL)  # reported as killed by SIGKILL: the test names this k
            chunks.append(b'["hung for 60 s"]\n')
            break
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
'''


@pytest.mark.parametrize("kind", ["flat", "nested", "enter", "main"])
def test_a_signal_at_every_step_ends_by_it(tmp_path: object, kind: str) -> None:
    script = tmp_path / "every_step.py"  # type: ignore[operator]
    script.write_text(SCENARIOS)
    # Thousands of forks: 10-30 s on a quiet machine, several times that with both cores busy.
    # Each k is bounded in the script (60 s); this bounds the whole only against a hang.
    rc, out, err = run_script([str(script), kind], timeout=900)
    assert rc == 0, err
    assert "Traceback" not in err, err
    results = json.loads(out)
    *signalled, (last_k, last_code, last_lines) = results
    # The last run got no signal (k past the end): it ran the whole scenario normally
    # (@main ends it by sys.exit(0) after its cleanups).
    assert last_code == 0, (last_k, last_lines)
    if kind == "main":
        assert ["global"] in last_lines, (last_k, last_lines)
    else:
        assert ["returned", last_k - 1] in last_lines, (last_k, last_lines)
    assert len(signalled) >= 20, "the tracer saw too few steps: is it tracing graceful?"
    for k, code, lines in signalled:
        what = [line[0] for line in lines]
        assert code == -signal.SIGTERM, (k, lines)
        assert "escaped" not in what, (k, lines)
        assert "after" not in what, (k, lines)
        assert "returned" not in what, (k, lines)
        for name in ("global", "block", "outer", "inner"):
            assert what.count(name) <= 1, (k, lines)
        if kind == "nested" and "after inner" in what:
            # The signal came at the very end of the inner guard's exit, after it had decided:
            # the enclosing block gets it a moment later (graceful delivers it again once the
            # main thread is out of the exit path), so its guard ends the process.
            assert what.index("after inner") < what.index("outer"), (k, lines)
    # The registered cleanup is skipped only once the outermost guard has given the signal back
    # (its last act: the default disposition then ends the process, as outside any guard), so
    # the runs that skip it are the last ones, and the first of them is in that restore.
    # With "enter", the first runs skip it too: the signal came before the guard took it.
    skipped = [k for k, _, lines in signalled if ["global"] not in lines]
    prefix = [k for i, k in enumerate(skipped, 1) if k == i]
    suffix = skipped[len(prefix) :]
    assert not prefix or kind == "enter", prefix
    if suffix:
        assert suffix == list(range(suffix[0], len(signalled) + 1)), suffix
        first = signalled[suffix[0] - 1][2]
        at = next(line for line in first if line[0] == "at")
        assert at[2] in ("restore", "_close"), at
    print(f"{kind}: {len(signalled)} steps, Python {sys.version_info[:2]}")
