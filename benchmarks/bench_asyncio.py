"""11. asyncio: SIGTERM to death of a server holding 1 000 open connections.

The server accepts connections and waits on each for EOF; this process opens 1 000 connections
and, once the server has all of them, sends SIGTERM and times until ``waitpid`` returns:

* baseline: hand-written ``loop.add_signal_handler(SIGTERM, stop.set)``; on the signal the
  server closes its listener and returns, and ``asyncio.run`` cancels the 1 000 handler tasks;
* graceful: ``@graceful.main`` on ``async def main()`` (the API being built in main: where this
  graceful refuses a coroutine function, the figure says so);
* for information: ``asyncio.run(main())`` inside a plain ``@graceful.main`` function (what
  worked before ``@graceful.main`` took coroutine functions).
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import time

from _measure import Context, Figure, ratio_target, reap, unavailable, wait_exact, wait_line

NAME = "asyncio"
TITLE = "asyncio server with 1000 connections: SIGTERM to death"
N = 1000
#: Lines each program wrote to stderr as it ended (asyncio's logs of cancelled handlers).
STDERR_LINES: dict[str, list[int]] = {}
#: Whether graceful's deadline ended the program (it logs "shutdown deadline ... passed").
DEADLINE: dict[str, list[bool]] = {}

SERVER = """
import asyncio, resource, signal, sys
side, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * n)), hard))
conns = []

async def handle(reader, writer):
    conns.append(writer)
    if len(conns) == n:
        print("all", flush=True)
    await reader.read()

async def serve(stop=None):
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2 * n)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    if stop is None:
        async with server:
            await server.serve_forever()
    else:
        await stop.wait()
        server.close()

if side == "hand":
    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(stop)
    asyncio.run(main())
elif side == "graceful-async":
    import graceful
    async def main():
        await serve()
    try:
        entry = graceful.main(main)
    except TypeError as exc:
        print("unsupported", exc, flush=True)
        sys.exit(3)
    entry()
else:
    import graceful
    @graceful.main
    def main():
        asyncio.run(serve())
    main()
"""

SIDES = {
    "hand": "hand-written loop.add_signal_handler",
    "graceful-async": "@graceful.main async def main()",
    "graceful-run": "asyncio.run() inside a plain @graceful.main",
}


def _sample(ctx: Context, side: str) -> float | None:
    # A file, not a pipe: asyncio logs one traceback per cancelled connection on some versions,
    # more than a pipe holds.
    err_path = ctx.tmp / f"asyncio-{side}.err"
    with open(err_path, "w") as err:
        proc = ctx.popen(
            ctx.py(SERVER, side, str(N)), stdout=subprocess.PIPE, stderr=err, text=True
        )
    clients: list[socket.socket] = []
    try:
        line = wait_line(proc, "", timeout=30)
        if line.startswith("unsupported"):
            return None
        port = int(line.split()[1])
        for _ in range(N):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_line(proc, "all", timeout=60)
        time.sleep(0.02)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_exact(proc, 30)
        elapsed = (time.monotonic() - start) * 1000
        if proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
            tail = err_path.read_text(errors="replace")[-800:]
            raise RuntimeError(f"{side}: exit {proc.returncode}: {tail}")
        with open(err_path, "rb") as f:
            text = f.read()
        STDERR_LINES.setdefault(side, []).append(text.count(b"\n"))
        DEADLINE.setdefault(side, []).append(b"shutdown deadline" in text)
        return elapsed
    finally:
        for c in clients:
            with contextlib.suppress(OSError):
                c.close()
        reap(proc)


def run(ctx: Context) -> list[Figure]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * N + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * N), hard))
    samples: dict[str, list[float]] = {s: [] for s in SIDES}
    missing: set[str] = set()
    for _ in range(ctx.rounds(9, 3)):
        for side in SIDES:
            if side in missing:
                continue
            t = _sample(ctx, side)
            if t is None:
                missing.add(side)
            else:
                samples[side].append(t)
    figures = []
    name = f"SIGTERM to death, {N} connections"
    if "graceful-async" in missing:
        figures.append(
            unavailable(
                NAME,
                f"{name}, @graceful.main async def",
                SIDES["hand"],
                "this graceful refuses @graceful.main on a coroutine function: asyncio "
                "support has not landed in main yet",
                ratio_target(1.2),
            )
        )
    else:
        figures.append(
            Figure.paired(
                NAME,
                f"{name}, @graceful.main async def",
                SIDES["hand"],
                "ms",
                samples["graceful-async"],
                samples["hand"],
                ratio_target(1.2),
                note=_deadline_note("graceful-async"),
                ended_by_deadline=DEADLINE.get("graceful-async", []),
            )
        )
    figures.append(
        Figure.paired(
            NAME,
            f"{name}, {SIDES['graceful-run']}",
            SIDES["hand"],
            "ms",
            samples["graceful-run"],
            samples["hand"],
            note=("for information; " + _deadline_note("graceful-run")).rstrip("; "),
            stderr_lines=dict(STDERR_LINES),
            ended_by_deadline=DEADLINE.get("graceful-run", []),
        )
    )
    return figures


def _deadline_note(side: str) -> str:
    hits = DEADLINE.get(side, [])
    if not any(hits):
        return ""
    return f"{sum(hits)} of {len(hits)} runs ended by graceful's deadline, not by the shutdown"
