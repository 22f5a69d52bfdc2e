"""2. 100 000 ``graceful.register`` / ``graceful.unregister`` against ``atexit``'s.

Each side runs in a fresh interpreter per round (so nothing registered can run at exit): it
registers 100 000 distinct functions, then unregisters some of them with the registry full (the
per-call cost at that size), then (graceful only) all of them, and finally empties the registry.
``atexit.unregister`` scans the whole list on every call (O(n)), so unregistering all 100 000
from atexit would take minutes: the baseline for unregistering is the per-call cost at 100 000
entries, measured on both sides. O(1) is checked directly: graceful's per-call cost with 100 000
entries against its cost with 1 000 entries. Callgrind gives the per-call instructions of
``register`` on both sides, which do not move with the machine's load.
"""

from __future__ import annotations

from typing import Any

from _measure import (
    Context,
    Figure,
    instructions,
    ratio_target,
    valgrind,
    value_target,
)

NAME = "registry"
TITLE = "graceful.register/unregister vs atexit"
N = 100_000

WORKER = """
import sys, time, json
side, n, probe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if side == "graceful":
    import graceful
    register, unregister = graceful.register, graceful.unregister
else:
    import atexit
    register, unregister = atexit.register, atexit.unregister
funcs = [(lambda: None) for _ in range(n)]
small = [(lambda: None) for _ in range(1000)]
out = {}

# unregister with 1 000 entries (all of them, oldest first): the O(1) reference
for f in small:
    register(f)
t = time.perf_counter()
for f in small:
    unregister(f)
out["unregister_small_us"] = (time.perf_counter() - t) / len(small) * 1e6

t = time.perf_counter()
for f in funcs:
    register(f)
out["register_s"] = time.perf_counter() - t

# per call with the registry full, oldest first (the worst case of a list)
t = time.perf_counter()
for f in funcs[:probe]:
    unregister(f)
out["unregister_full_us"] = (time.perf_counter() - t) / probe * 1e6

if side == "graceful":
    for f in funcs[:probe]:
        register(f)
    t = time.perf_counter()
    for f in funcs:
        unregister(f)
    out["unregister_all_s"] = time.perf_counter() - t
else:
    atexit._clear()
print(json.dumps(out))
"""

CALLGRIND = """
import sys, os
side, n = sys.argv[1], int(sys.argv[2])
if side == "graceful":
    import graceful
    register = graceful.register
else:
    import atexit
    register = atexit.register
funcs = [(lambda: None) for _ in range(20000)]
for f in funcs[:n]:
    register(f)
os._exit(0)
"""


def run(ctx: Context) -> list[Figure]:
    rounds = ctx.rounds(7, 3)
    probe = 200 if not ctx.quick else 100
    base: list[dict[str, Any]] = []
    grace: list[dict[str, Any]] = []
    for side in ("atexit", "graceful"):  # warm __pycache__
        ctx.run_json(WORKER, side, "1000", "10")
    for _ in range(rounds):
        base.append(ctx.run_json(WORKER, "atexit", str(N), str(probe)))
        grace.append(ctx.run_json(WORKER, "graceful", str(N), str(probe)))

    def col(samples: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
        return [s[key] * scale for s in samples]

    growth = [g["unregister_full_us"] / g["unregister_small_us"] for g in grace]
    base_growth = [b["unregister_full_us"] / b["unregister_small_us"] for b in base]
    figures = [
        Figure.paired(
            NAME,
            f"register x{N // 1000}k",
            f"atexit.register x{N // 1000}k",
            "ms",
            col(grace, "register_s", 1000),
            col(base, "register_s", 1000),
            ratio_target(3.0),
        ),
        Figure.paired(
            NAME,
            f"unregister all {N // 1000}k",
            "(atexit would take minutes: see per call)",
            "s",
            col(grace, "unregister_all_s"),
            [],
            value_target(0.5, "s", "< 0.5 s"),
        ),
        Figure.paired(
            NAME,
            f"unregister per call, {N // 1000}k registered",
            "atexit.unregister, same size",
            "us",
            col(grace, "unregister_full_us"),
            col(base, "unregister_full_us"),
            note=f"{probe} calls per round, oldest first",
        ),
        Figure.paired(
            NAME,
            "unregister O(1): per-call cost 100k vs 1k registered",
            "atexit's growth, same sizes",
            "x",
            growth,
            base_growth,
            value_target(2.0, "x", "O(1): <= 2x from 1k to 100k"),
            note="value = graceful's growth factor; atexit's is O(n)",
        ),
    ]
    if valgrind() is not None:
        n = 20000
        per: dict[str, list[float]] = {"atexit": [], "graceful": []}
        for _ in range(ctx.rounds(2, 1)):
            for side in ("atexit", "graceful"):
                full = instructions(ctx, ctx.py(CALLGRIND, side, str(n)))
                empty = instructions(ctx, ctx.py(CALLGRIND, side, "0"))
                per[side].append((full - empty) / n)
        figures.append(
            Figure.paired(
                NAME,
                "register, instructions per call (callgrind)",
                "atexit.register",
                "instr",
                per["graceful"],
                per["atexit"],
                ratio_target(3.0),
                note="load-independent cross-check",
            )
        )
    return figures
