"""4. ``graceful.spawn`` against ``subprocess.Popen`` of the same command.

Three clocks, each from the call: until the call returns (``sleep 60``, terminated and reaped
after each start, not timed); until the program has run (``true``, until it is reaped: what a
tool that starts many short programs waits for); until the first line of a program that prints
one (``sh -c 'echo ready; exec sleep 60'``, read from its stdout pipe). ``spawn`` returns before
its launcher has exec'd the program, so only the last two say what a user waits for.

Starts alternate (Popen, spawn, Popen, spawn...) in one interpreter that has imported both.
``spawn(..., supervise=True)`` starts a Python supervisor: its figures are measured against a
bare interpreter start (``python -I -S -c pass``, the floor of any Python supervisor), in the
same rotation. The note says which launcher ``spawn`` used (``native``: setpriv and /bin/sh;
``python``: the exec launcher) and the load average.
"""

from __future__ import annotations

from _measure import Context, Figure, loadavg, ratio_target

NAME = "spawn"
TITLE = "graceful.spawn start vs subprocess.Popen"

WORKER = """
import inspect, json, os, subprocess, sys, time
import graceful
rounds = int(sys.argv[1])
supervise = "supervise" in inspect.signature(graceful.spawn).parameters
try:
    from graceful._process import native_launch
    native = native_launch.command(
        sig=15, lifeline=-1, executable="true", argv=["true"], found=b"/bin/true", env=None
    ) is not None
except ImportError:
    native = False
SLEEP, TRUE = ["sleep", "60"], ["true"]
LINE = ["sh", "-c", "echo ready; exec sleep 60"]

def returned(start):
    t = time.perf_counter()
    proc = start(SLEEP)
    elapsed = time.perf_counter() - t
    proc.terminate()
    proc.wait()
    return elapsed

def ran(start):
    t = time.perf_counter()
    start(TRUE).wait()
    return time.perf_counter() - t

def first_line(start):
    t = time.perf_counter()
    proc = start(LINE, stdout=subprocess.PIPE)
    proc.stdout.readline()
    elapsed = time.perf_counter() - t
    proc.terminate()
    proc.wait()
    proc.stdout.close()
    return elapsed

def interpreter(_):
    t = time.perf_counter()
    subprocess.Popen([sys.executable, "-I", "-S", "-c", "pass"]).wait()
    return time.perf_counter() - t

starts = {"popen": subprocess.Popen, "spawn": graceful.spawn}
if supervise:
    starts["supervise"] = lambda *a, **k: graceful.spawn(*a, supervise=True, **k)
clocks = {"returned": returned, "ran": ran, "first_line": first_line}
out = {f"{s} {c}": [] for s in starts for c in clocks}
out["interpreter"] = []
for name, start in starts.items():  # warm up: bytecode, the first fork, setpriv's probe
    for clock in clocks.values():
        clock(start)
interpreter(None)
for _ in range(rounds):
    for clock_name, clock in clocks.items():
        for name, start in starts.items():
            out[f"{name} {clock_name}"].append(clock(start) * 1000)
    out["interpreter"].append(interpreter(None) * 1000)
out["native"] = native
print(json.dumps(out))
"""

CLOCKS = {
    "returned": "until spawn returns (sleep 60)",
    "ran": "until the program has run (true, reaped)",
    "first_line": "until its first line (sh -c 'echo ready; ...')",
}


def run(ctx: Context) -> list[Figure]:
    before = loadavg()[0]
    out = ctx.run_json(WORKER, str(ctx.rounds(30, 10)))
    load = f"load average {before:.2f} -> {loadavg()[0]:.2f}"
    launcher = "native (setpriv + /bin/sh)" if out["native"] else "python (exec launcher)"
    figures = [
        Figure.paired(
            NAME,
            f"start, {text}",
            "subprocess.Popen",
            "ms",
            out[f"spawn {clock}"],
            out[f"popen {clock}"],
            ratio_target(3.0),
            note=f"spawn's launcher: {launcher}; {load}",
        )
        for clock, text in CLOCKS.items()
    ]
    if "supervise returned" not in out:
        figures[0].note += "; spawn(supervise=True) not in this graceful"
        return figures
    figures += [
        Figure.paired(
            NAME,
            f"spawn(supervise=True), {text}",
            "python -I -S -c pass",
            "ms",
            out[f"supervise {clock}"],
            out["interpreter"],
            ratio_target(2.0) if clock != "returned" else None,
            note=f"x Popen: {_ratio(out, clock):.1f}; {load}",
        )
        for clock, text in CLOCKS.items()
    ]
    return figures


def _ratio(out: dict[str, list[float]], clock: str) -> float:
    return _median(out[f"supervise {clock}"]) / _median(out[f"popen {clock}"])


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)
