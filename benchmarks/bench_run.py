"""10. ``graceful run`` against tini, dumb-init and catatonit on the same commands.

* start-up: ``TOOL -- true``, from ``Popen`` to ``waitpid``, the tools alternating (a blocking
  wait: ``subprocess.run(timeout=...)`` polls and rounded every figure up to 1, 3, 7, 15, 31 or
  63 ms, see ``Context.time_process``);
* start-up in instructions (callgrind, the supervisor's own process): the wall figure is a
  CPU-bound Python start against a 1.5 ms C program, so its difference grows with the machine's
  load; the instruction count does not (see FINDINGS.md, "graceful run start-up");
* signal forwarding latency: each tool runs the same responder (SIGUSR1 blocked, taken with
  ``sigwaitinfo``, which writes ``time.monotonic()`` at once); this process sends SIGUSR1 to the
  tool and reads the time its child got it, the tools alternating signal by signal. Each of
  several sessions starts the tools afresh; the figure is the median of each session's median
  (min-max: the spread across sessions, each session an independent run) and the p99 of all
  samples;
* RSS of the running tool (VmRSS);
* exit-status fidelity: the return code the parent sees, against the bare command's.

The tools are found on PATH (and next to the benchmark's Python for dumb-init); if missing, and
unless ``--no-install``, tini and catatonit come from Debian's packages (``apt-get``) and
dumb-init from the package index (``pip``). The table says what was used.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Any, Optional

from _measure import (
    Context,
    Figure,
    Stats,
    delta_target,
    instructions,
    loadavg,
    ratio_target,
    reap,
    rss_mib,
    unavailable,
    valgrind,
    value_target,
    wait_line,
)

NAME = "run"
TITLE = "graceful run vs tini, dumb-init, catatonit"

RESPONDER = """
import os, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("ready", flush=True)
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    os.write(1, ("%r\\n" % time.monotonic()).encode())
"""

#: Commands whose exit status each tool must pass on (sh -c, cores off).
STATUS_COMMANDS = {
    "exit 0": "exit 0",
    "exit 3": "exit 3",
    "exit 255": "exit 255",
    "killed by TERM": "kill -TERM $$",
    "killed by INT": "kill -INT $$",
    "killed by HUP": "kill -HUP $$",
    "killed by KILL": "kill -KILL $$",
    "killed by QUIT": "ulimit -c 0; kill -QUIT $$",
    "killed by SEGV": "ulimit -c 0; kill -SEGV $$",
}


def _apt(ctx: Context, packages: list[str]) -> str:
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "apt-get unavailable (not root, or no apt-get)"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    for update in (False, True):
        if update:
            ctx.run([apt, "update", "-qq"], capture_output=True, env=env)
        out = ctx.run([apt, "install", "-y", "-qq", *packages], capture_output=True, env=env)
        if out.returncode == 0:
            return f"installed with apt-get: {' '.join(packages)}"
    return f"apt-get install {' '.join(packages)} failed"


def locate_tools(ctx: Context) -> tuple[dict[str, list[str]], dict[str, str]]:
    """{tool: argv prefix}, {tool: where it came from, or why it is missing}."""
    found: dict[str, list[str]] = {}
    origin: dict[str, str] = {}
    bindir = os.path.dirname(ctx.python)

    def which(name: str) -> Optional[str]:
        local = os.path.join(bindir, name)
        if os.access(local, os.X_OK):
            return local
        return shutil.which(name)

    missing_apt = [t for t in ("tini", "catatonit") if which(t) is None]
    if missing_apt and ctx.install:
        origin["apt"] = _apt(ctx, missing_apt)
    if which("dumb-init") is None and ctx.install:
        out = ctx.run(
            [ctx.python, "-m", "pip", "install", "-q", "dumb-init"], capture_output=True, text=True
        )
        origin["pip"] = "installed dumb-init with pip" if out.returncode == 0 else "pip failed"
    for tool, argv in (
        ("tini", ["-s", "--"]),
        ("dumb-init", ["--"]),
        ("catatonit", ["--"]),
    ):
        path = which(tool)
        if path is None:
            origin[tool] = "not found" + (" (--no-install)" if not ctx.install else "")
            continue
        found[tool] = [path, *argv]
        origin[tool] = f"{path} ({_version(ctx, path)})"
    graceful = which("graceful")
    prefix = [graceful] if graceful else [ctx.python, "-m", "graceful"]
    check = ctx.run([*prefix, "run", "--help"], capture_output=True, text=True)
    if check.returncode == 0:
        found["graceful run"] = [*prefix, "run", "--"]
        origin["graceful run"] = " ".join(prefix) + " run"
    else:
        origin["graceful run"] = (
            "this graceful has no `run` subcommand: the cli branch is not merged into main yet"
        )
    return found, origin


def _version(ctx: Context, path: str) -> str:
    for flag in ("--version", "-V"):
        out = ctx.run([path, flag], capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and text:
            return text[0]
    return "version unknown"


def startup(ctx: Context, tools: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    sides = {"bare": [], **{t: [] for t in tools}}  # type: dict[str, list[float]]
    for _ in range(rounds):
        for name, samples in sides.items():
            argv = ["true"] if name == "bare" else [*tools[name], "true"]
            samples.append(ctx.time_process(argv, stdin=subprocess.DEVNULL) * 1000)
    return sides


def _read_time(proc: subprocess.Popen[Any]) -> float:
    line = wait_line(proc, ".", timeout=5)
    return float(line)


def forwarding(
    ctx: Context, tools: dict[str, list[str]], rounds: int, per_round: int
) -> tuple[dict[str, list[list[float]]], dict[str, list[float]], dict[str, list[int]]]:
    """Latencies in ms, [round][sample] per tool; RSS MiB per round; threads."""
    procs: dict[str, subprocess.Popen[Any]] = {}
    lat: dict[str, list[list[float]]] = {t: [] for t in tools}
    rss: dict[str, list[float]] = {t: [] for t in tools}
    threads: dict[str, list[int]] = {t: [] for t in tools}
    try:
        for name, prefix in tools.items():
            procs[name] = ctx.popen(
                [*prefix, ctx.python, "-c", RESPONDER],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
        for proc in procs.values():
            wait_line(proc, "ready")
        time.sleep(0.1)
        for _ in range(rounds):
            for t in tools:
                lat[t].append([])
            for _ in range(per_round):
                for name, proc in procs.items():
                    start = time.monotonic()
                    os.kill(proc.pid, signal.SIGUSR1)
                    got = _read_time(proc)
                    lat[name][-1].append((got - start) * 1000)
                    time.sleep(0.002)
            for name, proc in procs.items():
                rss[name].append(rss_mib(proc.pid))
                threads[name].append(_threads(proc.pid))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            reap(proc)
    return lat, rss, threads


def _threads(pid: int) -> int:
    from _measure import status_field

    return status_field(pid, "Threads")


def statuses(ctx: Context, tools: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {"bare": {}, **{t: {} for t in tools}}
    for label, script in STATUS_COMMANDS.items():
        for name, codes in out.items():
            argv = ["sh", "-c", script]
            if name != "bare":
                argv = [*tools[name], *argv]
            codes[label] = ctx.run(argv, stdin=subprocess.DEVNULL, timeout=30).returncode
    return out


def sessions(
    ctx: Context, tools: dict[str, list[str]], count: int, per_session: int
) -> tuple[dict[str, list[list[float]]], dict[str, list[float]], dict[str, list[float]]]:
    """``count`` independent forwarding runs (fresh tool processes each): latencies in ms,
    [session][sample] per tool; RSS MiB per session; the load average before each session."""
    lat: dict[str, list[list[float]]] = {t: [] for t in tools}
    rss: dict[str, list[float]] = {t: [] for t in tools}
    loads: list[float] = []
    for _ in range(count):
        loads.append(loadavg()[0])
        one, mem, _threads_seen = forwarding(ctx, tools, 1, per_session)
        for t in tools:
            lat[t].append(one[t][0])
            rss[t].extend(mem[t])
    return lat, rss, {"load": loads}


def startup_instructions(ctx: Context, tools: dict[str, list[str]]) -> dict[str, float]:
    """Instructions (millions) of each tool's own process for ``TOOL -- true`` (callgrind)."""
    if valgrind() is None:
        return {}
    return {t: instructions(ctx, [*tools[t], "true"]) / 1e6 for t in tools}


def run(ctx: Context) -> list[Figure]:
    tools, origin = locate_tools(ctx)
    used = "; ".join(f"{k}: {v}" for k, v in origin.items())
    ctx.notes.append(f"run: tools used: {used}")
    figures: list[Figure] = []
    have_graceful = "graceful run" in tools
    have_tini = "tini" in tools
    load_before = loadavg()[0]
    ups = startup(ctx, tools, ctx.rounds(30, 10))
    load = f"load average {load_before:.2f} -> {loadavg()[0]:.2f}"
    counted = startup_instructions(ctx, tools)
    lat, rss, meta = sessions(ctx, tools, ctx.rounds(7, 2), ctx.rounds(100, 20))
    session_loads = ", ".join(f"{x:.2f}" for x in meta["load"])
    status = statuses(ctx, tools)

    def med_per_round(name: str) -> list[float]:
        import statistics

        return [statistics.median(r) for r in lat[name]]

    def pooled(name: str) -> list[float]:
        return [x for r in lat[name] for x in r]

    others = [t for t in ("graceful run", "dumb-init", "catatonit") if t in tools]
    missing_graceful = origin["graceful run"]
    if not have_tini:
        return [unavailable(NAME, "graceful run vs tini", "tini", origin.get("tini", ""))]
    if not have_graceful:
        for what, target in (
            ("start-up (TOOL -- true)", delta_target(25.0, "ms")),
            ("forwarding latency, median", ratio_target(1.25)),
            ("forwarding latency, p99", ratio_target(2.0)),
            ("RSS", value_target(15.0, "MiB")),
            ("exit-status fidelity", None),
        ):
            figures.append(
                unavailable(NAME, f"graceful run: {what}", "tini", missing_graceful, target)
            )
    for name in others:
        is_g = name == "graceful run"
        figures.append(
            Figure.paired(
                NAME,
                f"{name}: start-up (TOOL -- true)",
                "tini -s -- true",
                "ms",
                ups[name],
                ups["tini"],
                delta_target(25.0, "ms") if is_g else None,
                note=f"bare `true`: {_median(ups['bare']):.1f} ms; {load}",
            )
        )
        if name in counted and "tini" in counted:
            figures.append(
                Figure.paired(
                    NAME,
                    f"{name}: start-up, instructions (callgrind)",
                    "tini -s -- true",
                    "M instr",
                    [counted[name]],
                    [counted["tini"]],
                    note="the tool's own process; load-independent",
                )
            )
        figures.append(
            Figure.paired(
                NAME,
                f"{name}: forwarding latency, median",
                "tini",
                "ms",
                med_per_round(name),
                med_per_round("tini"),
                ratio_target(1.25) if is_g else None,
                note=f"median [min-max] of {len(lat[name])} sessions' medians, each from fresh "
                f"processes; load average at each session: {session_loads}",
            )
        )
        p99 = Stats.of(pooled(name))
        p99_tini = Stats.of(pooled("tini"))
        assert p99 is not None
        assert p99_tini is not None
        g99, t99 = p99.percentile(99), p99_tini.percentile(99)
        figures.append(
            Figure.paired(
                NAME,
                f"{name}: forwarding latency, p99 (of {p99.n})",
                "tini",
                "ms",
                [g99],
                [t99],
                ratio_target(2.0) if is_g else None,
            )
        )
        figures.append(
            Figure.paired(
                NAME,
                f"{name}: RSS while running",
                "tini",
                "MiB",
                rss[name],
                rss["tini"],
                value_target(15.0, "MiB") if is_g else None,
            )
        )
    for name in ("tini", *others):
        wrong = {k: v for k, v in status[name].items() if v != status["bare"][k]}
        figures.append(
            Figure.paired(
                NAME,
                f"{name}: exit status as the bare command's",
                "the bare command",
                f"of {len(STATUS_COMMANDS)}",
                [float(len(STATUS_COMMANDS) - len(wrong))],
                [float(len(STATUS_COMMANDS))],
                note="differs: "
                + (
                    ", ".join(f"{k} {v} (bare {status['bare'][k]})" for k, v in wrong.items())
                    or "none"
                ),
                statuses=status[name],
            )
        )
    return figures


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")
