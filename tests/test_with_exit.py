"""A signal at every bytecode of a user's ``with graceful.guard():`` statement, in its own frame.

3.9 and 3.10 run signal handlers at nearly every instruction, also between the end of a ``with``
block and the call of its ``__exit__``: a ``Signalled`` raised there left the block without
calling the guard's ``__exit__`` (a traceback, exit status 1, no cleanups). The handler now
waits for that call (``protect.at_with_exit``), as 3.11+ does by itself. A tracer that sees every
bytecode of the user's function sends SIGTERM before the k-th one, for every k; each run must end
by SIGTERM, without a traceback, with each block's cleanup at most once and never skipped once
the block has begun, and no code after a block once the signal was sent. Not on 3.11+: handlers
run there only at calls, jumps and function starts, so a signal injected before other bytecodes
(a ``with`` exit's LOAD_CONSTs) is one no real signal can cause; tests/test_sweep_graceful.py
sweeps every line of the same nesting on every version.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

PROGRAM = textwrap.dedent(
    """
    import os, signal, sys
    import graceful

    K = int(sys.argv[1])
    count = [0]

    def tracer(frame, event, arg):
        if frame.f_code.co_name != "work":
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            count[0] += 1
            if count[0] == K:
                os.write(1, b"signal\\n")
                os.kill(os.getpid(), signal.SIGTERM)  # handled before this bytecode runs
        return tracer

    def close(what):
        print("closed", what, flush=True)

    def work():
        with graceful.guard() as outer:
            outer.register(close, "outer")
            with graceful.guard() as inner:
                inner.register(close, "inner")
                print("in block", flush=True)
            print("between", flush=True)
        print("after", flush=True)

    sys.settrace(tracer)
    work()
    sys.settrace(None)
    print("counted", count[0], flush=True)
    """
)

TIMEOUT = 60  # seconds a run may take on a busy machine (each takes ~0.1 s)


def _run(k: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, str(k)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="3.11+ runs handlers at fewer places")
def test_a_signal_at_every_bytecode_of_a_users_with_statement() -> None:
    counting = _run(0)
    assert counting.returncode == 0, counting.stderr
    steps = int(counting.stdout.split("counted ")[-1])
    assert steps > 20, counting.stdout  # every bytecode of work(), both with statements
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(_run, range(1, steps + 1)))
    wrong = []
    for k, done in enumerate(runs, start=1):
        lines = done.stdout.splitlines()
        problems = []
        if done.returncode != -signal.SIGTERM:
            problems.append(f"status {done.returncode}")
        if "Traceback" in done.stderr:
            problems.append("a traceback")
        if len(lines) != len(set(lines)):
            problems.append("a cleanup ran twice")
        if "in block" in lines and "closed inner" not in lines:
            problems.append("the inner block began and its cleanup never ran")
        if "in block" in lines and "signal" in lines and "closed outer" not in lines:
            problems.append("the outer block began and its cleanup never ran")
        later = lines[lines.index("signal") :] if "signal" in lines else []
        if "between" in later or "after" in later:
            problems.append("code after a guarded block ran after the signal")
        if problems:
            wrong.append(f"k={k}: {', '.join(problems)}\n{done.stdout}{done.stderr}")
    assert not wrong, f"{len(wrong)} of {steps} steps:\n" + "\n".join(wrong)


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="the pattern is that of 3.9 and 3.10")
def test_the_with_exit_pattern_is_this_interpreters() -> None:
    import dis
    import opcode

    from graceful._core import protect

    names = ("POP_BLOCK", "LOAD_CONST", "DUP_TOP", "DUP_TOP", "CALL_FUNCTION")
    assert tuple(opcode.opmap[n] for n in names) == protect.WITH_EXIT

    def sample() -> None:
        with open(__file__):
            pass

    ops = [(i.opname, i.arg) for i in dis.get_instructions(sample)]
    at = ops.index(("POP_BLOCK", None))
    assert [op for op, _ in ops[at : at + 5]] == list(names)
    assert ops[at + 4][1] == 3
