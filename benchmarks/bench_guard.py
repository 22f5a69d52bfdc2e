"""5. ``with graceful.guard(): pass`` against saving and restoring the same four handlers.

The baseline is what any signal-handling code must do: ``signal.signal`` for HUP, INT, QUIT and
TERM, then put the previous handlers back. In one interpreter, batches of each alternate
(baseline, guard, baseline, guard...) after a first guard has started the helper thread (once per
process). Callgrind counts the instructions per iteration of both loops.
(Folded from ``guard_cost.py``, which still runs on its own.)
"""

from __future__ import annotations

from _measure import Context, Figure, instructions, ratio_target, valgrind

NAME = "guard"
TITLE = "with graceful.guard(): pass vs four signal.signal saves and restores"

COMMON = """
import signal, sys, time
import graceful
SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
def handler(signum, frame):
    raise KeyboardInterrupt
def by_hand():
    previous = [(s, signal.signal(s, handler)) for s in SIGNALS]
    for s, h in reversed(previous):
        signal.signal(s, h)
def with_guard():
    with graceful.guard():
        pass
with_guard()  # the first guard starts the helper thread, once per process
"""

WORKER = (
    COMMON
    + """
import json
batches, n = int(sys.argv[1]), int(sys.argv[2])
out = {"base": [], "guard": []}
for _ in range(batches):
    for key, fn in (("base", by_hand), ("guard", with_guard)):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out[key].append((time.perf_counter() - t) / n * 1e6)
print(json.dumps(out))
"""
)

CALLGRIND = (
    COMMON
    + """
import os
fn = with_guard if sys.argv[1] == "guard" else by_hand
for _ in range(int(sys.argv[2])):
    fn()
os._exit(0)
"""
)


def run(ctx: Context) -> list[Figure]:
    batches = ctx.rounds(15, 5)
    n = 2000 if not ctx.quick else 1000
    out = ctx.run_json(WORKER, str(batches), str(n))
    figures = [
        Figure.paired(
            NAME,
            "enter + exit",
            "4x signal.signal save + restore",
            "us",
            out["guard"],
            out["base"],
            ratio_target(3.0),
            note=f"{batches} alternating batches of {n}",
        )
    ]
    if valgrind() is not None:
        loops = 2000
        per: dict[str, list[float]] = {"base": [], "guard": []}
        for _ in range(ctx.rounds(2, 1)):
            for side in ("base", "guard"):
                full = instructions(ctx, ctx.py(CALLGRIND, side, str(loops)))
                empty = instructions(ctx, ctx.py(CALLGRIND, side, "0"))
                per[side].append((full - empty) / loops)
        figures.append(
            Figure.paired(
                NAME,
                "enter + exit, instructions (callgrind)",
                "4x signal.signal save + restore",
                "instr",
                per["guard"],
                per["base"],
                ratio_target(3.0),
                note="load-independent cross-check",
            )
        )
    return figures
