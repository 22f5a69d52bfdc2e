"""4. ``graceful.spawn`` start against ``subprocess.Popen`` of the same command.

Start time: until the call returns with the program running (both wait for the exec). The
command is ``sleep 60``, terminated and reaped after each start (not timed). Starts alternate
(Popen, spawn, Popen, spawn...) in one interpreter that has imported both. Where this graceful
has ``spawn(..., supervise=True)`` (the ``cli`` branch), it is measured too, for information.
"""

from __future__ import annotations

from _measure import Context, Figure, ratio_target

NAME = "spawn"
TITLE = "graceful.spawn start vs subprocess.Popen"

WORKER = """
import inspect, json, subprocess, sys, time
import graceful
rounds = int(sys.argv[1])
supervise = "supervise" in inspect.signature(graceful.spawn).parameters
kinds = {
    "popen": lambda: subprocess.Popen(["sleep", "60"]),
    "spawn": lambda: graceful.spawn(["sleep", "60"]),
}
if supervise:
    kinds["supervise"] = lambda: graceful.spawn(["sleep", "60"], supervise=True)
out = {k: [] for k in kinds}
for start in kinds.values():  # warm up: the launcher's bytecode, the first fork
    p = start(); p.terminate(); p.wait()
for _ in range(rounds):
    for name, start in kinds.items():
        t = time.perf_counter()
        proc = start()
        out[name].append((time.perf_counter() - t) * 1000)
        proc.terminate()
        proc.wait()
print(json.dumps(out))
"""


def run(ctx: Context) -> list[Figure]:
    out = ctx.run_json(WORKER, str(ctx.rounds(30, 10)))
    figures = [
        Figure.paired(
            NAME,
            "start of sleep 60",
            "subprocess.Popen",
            "ms",
            out["spawn"],
            out["popen"],
            ratio_target(3.0),
        )
    ]
    if "supervise" in out:
        figures.append(
            Figure.paired(
                NAME,
                "start, spawn(supervise=True)",
                "subprocess.Popen",
                "ms",
                out["supervise"],
                out["popen"],
                note="no target in the issue",
            )
        )
    else:
        figures[0].note = "spawn(supervise=True) not in this graceful (cli branch not merged)"
    return figures
