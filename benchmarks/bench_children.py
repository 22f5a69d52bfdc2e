"""3 and 7. Stopping 200 children: cooperative ones, and ones that ignore SIGTERM.

Each sample is a fresh interpreter that starts 200 children (``sleep 60``, with pipes to them,
as a backend has), then signals itself with SIGTERM and times from that signal until every child
is reaped:

* graceful: the children are tracked inside ``with graceful.guard(on_signal="raise")``; the
  guard's exit stops them (break, close pipes, wait, reap) and lets ``Signalled`` out, where the
  clock stops;
* by hand: a handler raises, and the ``except`` terminates all, then waits for all, then closes
  the pipes.

For children that ignore SIGTERM (``trap '' TERM``), tracked with ``timeout=1``, the baseline is
the timeout itself (1 s); a hand-written "terminate all, wait until the timeout, kill the rest"
is measured alongside, for information.
"""

from __future__ import annotations

from _measure import Context, Figure, ratio_target

NAME = "children"
TITLE = "stopping 200 children: cooperative, and ignoring SIGTERM"
N = 200
TIMEOUT = 1.0

WORKER = """
import json, os, signal, subprocess, sys, time
side, kind, n, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if kind == "coop":
    cmd = ["sleep", "60"]
else:
    cmd = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]
P = subprocess.PIPE

def start():
    procs = [subprocess.Popen(cmd, stdin=P, stdout=P) for _ in range(n)]
    if kind != "coop":
        for p in procs:
            assert p.stdout.readline() == b"ready\\n"
    return procs

t0 = t1 = None
if side == "graceful":
    import graceful
    try:
        with graceful.guard(on_signal="raise"):
            procs = start()
            for p in procs:
                graceful.track(p, timeout=timeout)
            t0 = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
    except graceful.Signalled:
        t1 = time.monotonic()
else:
    class Stop(Exception):
        pass
    def handler(signum, frame):
        raise Stop
    signal.signal(signal.SIGTERM, handler)
    procs = start()
    try:
        t0 = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    except Stop:
        for p in procs:
            p.terminate()
        if kind == "coop":
            for p in procs:
                p.wait()
        else:
            deadline = t0 + timeout
            for p in procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for p in procs:
            p.stdin.close()
            p.stdout.close()
        t1 = time.monotonic()
alive = sum(p.poll() is None for p in procs)
print(json.dumps({"t": t1 - t0, "alive": alive}))
"""


def _sample(ctx: Context, side: str, kind: str) -> float:
    out = ctx.run_json(WORKER, side, kind, str(N), str(TIMEOUT), timeout=120)
    if out["alive"]:
        raise RuntimeError(f"{side}/{kind}: {out['alive']} children still alive")
    return float(out["t"]) * 1000


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(7, 3)
    coop: dict[str, list[float]] = {"by hand": [], "graceful": []}
    stubborn: dict[str, list[float]] = {"by hand": [], "graceful": []}
    for _ in range(rounds):
        coop["by hand"].append(_sample(ctx, "hand", "coop"))
        coop["graceful"].append(_sample(ctx, "graceful", "coop"))
    for _ in range(ctx.rounds(5, 2)):
        stubborn["by hand"].append(_sample(ctx, "hand", "stubborn"))
        stubborn["graceful"].append(_sample(ctx, "graceful", "stubborn"))
    timeout_ms = TIMEOUT * 1000
    return [
        Figure.paired(
            NAME,
            f"stop {N} cooperative children",
            "terminate all, then wait all, by hand",
            "ms",
            coop["graceful"],
            coop["by hand"],
            ratio_target(1.5),
            note="signal to all reaped, pipes closed",
        ),
        Figure.paired(
            NAME,
            f"stop {N} children ignoring SIGTERM, timeout=1",
            "the timeout itself (1 s)",
            "ms",
            stubborn["graceful"],
            [timeout_ms] * len(stubborn["graceful"]),
            ratio_target(1.3),
        ),
        Figure.paired(
            NAME,
            f"stop {N} children ignoring SIGTERM, timeout=1",
            "by hand: terminate all, wait to 1 s, kill the rest",
            "ms",
            stubborn["graceful"],
            stubborn["by hand"],
            note="for information",
        ),
    ]
