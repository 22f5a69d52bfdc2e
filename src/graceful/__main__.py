"""``graceful demo``: watch a guarded program get SIGTERM, clean up, and die by it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from typing import Optional

DEMO = textwrap.dedent(
    """
    import shutil, sqlite3, tempfile, threading, graceful

    db = sqlite3.connect(":memory:", check_same_thread=False)
    graceful.register(print, "  [demo] 5. cleanup: database closed", flush=True)
    graceful.register(db.close)
    graceful.register_break(db.interrupt)  # runs at once on the signal: unblocks the query

    def worker():
        graceful.shutdown_event.wait()  # set the moment SIGTERM arrives

    def join_worker(t):
        t.join(5)
        print("  [demo] 4. cleanup: worker thread saw shutdown_event and stopped", flush=True)

    def report(backends):
        for b in backends:
            print(f"  [demo] 3. cleanup: backend stopped and reaped (returncode {b.returncode})",
                  flush=True)

    def announce():
        print("  [demo] busy in a query that never ends", flush=True)
        return 1

    @graceful.main(timeout=5)
    def main():
        t = threading.Thread(target=worker)
        t.start()
        graceful.register(join_worker, t)
        backends = []
        graceful.register(report, backends)  # registered before spawn's cleanup: runs after it
        backend = graceful.spawn(["sleep", "300"])  # broken, exited and reaped at shutdown
        backends.append(backend)
        print(f"  [demo] started backend pid {backend.pid} (sleep 300)", flush=True)
        with graceful.guard() as block:
            scratch = tempfile.mkdtemp()
            block.register(print, "  [demo] 2. block cleanup: scratch dir removed", flush=True)
            block.register(shutil.rmtree, scratch)
            block.register(print, "  [demo] 1. break: the query was interrupted", flush=True)
            db.create_function("announce", 0, announce)
            db.execute(
                "WITH RECURSIVE c(x) AS (SELECT announce() UNION ALL SELECT x+1 FROM c) "
                "SELECT count(*) FROM c"
            ).fetchone()
        return 0

    main()
    """
)


def demo() -> int:
    """Run the demo program in a child, send it SIGTERM, and report how it ended."""
    print("graceful demo: starting a guarded program (its output is indented)")
    proc = subprocess.Popen([sys.executable, "-u", "-c", DEMO], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    backend = 0
    try:
        while True:
            line = proc.stdout.readline()
            print(line, end="")
            if "started backend pid" in line:
                backend = int(line.split("pid ")[1].split()[0])
            if not line or "never ends" in line:
                break
        print(f"graceful demo: sending SIGTERM to pid {proc.pid}")
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            print(line, end="")
        rc = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    verdict = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
    print(f"graceful demo: the program {verdict} (returncode {rc}), after its cleanups ran.")
    orphan = backend > 0 and os.path.exists(f"/proc/{backend}")
    if backend > 0:
        print(f"graceful demo: backend pid {backend}: {'STILL RUNNING' if orphan else 'gone'}")
    ok = rc == -signal.SIGTERM and backend > 0 and not orphan
    print("graceful demo: OK" if ok else "graceful demo: UNEXPECTED")
    return 0 if ok else 1


def cli(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="graceful", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show a guarded program ending well on SIGTERM")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(cli())
