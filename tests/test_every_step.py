"""Issue 9, defects 1 and 2: a signal at ANY step of a guard's entry or exit is handled.

A tracer in the child counts the line events inside graceful's own code and sends SIGTERM to its
own process at the k-th one, for every k until the block and its exit complete without one. Each
k runs in a forked grandchild of one prepared child (a fork costs a millisecond; a fresh
interpreter fifty), which reports what it logged and how it ended. Every run must end by SIGTERM,
print no traceback, run each cleanup at most once, and never reach the code after the block.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from helpers import assert_skipped_only_at_the_end, run_every_step

SCENARIOS = r'''
KIND = sys.argv[1]
#: A guard's exits, traced at every bytecode (elsewhere: every line).
EXITS = {"__exit__", "_exit_inner", "_close", "__aexit__", "exit"}
EXITS |= {"steps", "drive", "drive_awaiting", "close_unless_signalled"}  # block_end.py, the blocks


def scenario(k, log):
    """Runs in a forked child; sends SIGTERM at the k-th line event in graceful's code."""
    tracer, count = signal_at(k, log, exits=EXITS)
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
            # The enclosing block goes on: a signal the inner guard's exit got is its own. Until
            # the k-th step is reached (it is then in the outer guard's exit) there is none to
            # hear: no wait (two thirds of the runs, 50 ms each).
            busy = time.monotonic() + 0.05
            while count[0] >= k and time.monotonic() < busy:
                pass
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
    elif KIND == "async-guard":
        import asyncio

        async def body():
            async with graceful.guard() as g:
                g.register(log, "block")
                sys.settrace(tracer)
                await asyncio.sleep(0)
            log("after", count[0])

        asyncio.run(body())
    elif KIND == "async-main":
        import asyncio

        async def awaited():  # an awaited cleanup, in the program's loop
            await asyncio.sleep(0)
            log("awaited")

        graceful.register(awaited)

        @graceful.main
        async def main():
            log("body", count[0])
            sys.settrace(tracer)
            await asyncio.sleep(0)
            return 0
        main()
    sys.settrace(None)
    log("returned", count[0])


if KIND in ("async-guard", "async-main"):
    # Imported once here, not in every forked run (a third of its CPU): the scenario imports it
    # before anything is traced, so graceful's code finds it loaded either way.
    import asyncio

sweep(scenario)
'''


@pytest.mark.parametrize("kind", ["flat", "nested", "enter", "main", "async-guard", "async-main"])
def test_a_signal_at_every_step_ends_by_it(tmp_path: Path, kind: str) -> None:
    # Thousands of forks: 10-30 s on a quiet machine, several times that with both cores busy.
    results, _ = run_every_step(tmp_path, SCENARIOS, [kind], timeout=900)
    *signalled, (last_k, last_code, last_lines) = results
    # The last run got no signal (k past the end): it ran the whole scenario normally
    # (@main ends it by sys.exit(0) after its cleanups).
    assert last_code == 0, (last_k, last_lines)
    if kind in ("main", "async-main"):
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
        for name in ("global", "block", "outer", "inner", "awaited"):
            assert what.count(name) <= 1, (k, lines)
        if kind == "nested" and "after inner" in what:
            # Issue 21, defect 2: a signal anywhere in the inner guard's exit, up to its last
            # bytecode, is raised into the enclosing block: the code after the inner block
            # runs only if the signal came after it.
            assert what.index("after inner") < what.index("at"), (k, lines)
    # With "enter", the first runs skip the registered cleanup: the signal came before the guard
    # took it. Otherwise only the last ones do, after the default disposition is put back.
    assert_skipped_only_at_the_end(
        signalled,
        at_start=kind == "enter",
        last_acts=("restore", "_close", "put_back", "close_unless_signalled"),
    )
    print(f"{kind}: {len(signalled)} steps, Python {sys.version_info[:2]}")


# Issue 21, defect 1: the first use of a module loaded on first use, raced by 8 threads, with
# SIGTERM at every step of the main thread's part. A module is never seen half-initialised: no
# traceback, no error in the watcher, and every registration a thread saw accepted runs once.
LAZY = r'''
import threading

NAMES = sys.argv[1:]
THREADS = 8


def use(name, tag, log, block):
    if name == "Guard.register":
        block.register(log, tag + "-block")
    elif name == "register_break":
        graceful.register_break(log, tag + "-break")
    elif name in ("shutdown_event", "draining"):
        getattr(graceful, name).is_set()
    elif name == "register":
        graceful.register(log, tag + "-first")
    else:
        getattr(graceful, name)


def first_use(offset, tag, log, block):
    """Each name in turn, starting at ``offset``: the threads race different modules at once."""
    for name in NAMES[offset:] + NAMES[:offset]:
        use(name, tag, log, block)
    graceful.register(log, tag)
    log("accepted", tag)


def scenario(k, log):
    go = threading.Event()
    # the main thread runs a module's body: the threads race it now
    tracer, count = signal_at(k, log, on_module=go.set)
    holder = {}

    def racer(i):
        go.wait(5)
        try:
            first_use(i % len(NAMES), f"t{i}", log, holder["block"])
        except graceful.RegistrationClosed:
            log("refused", i)
        except BaseException as exc:
            import traceback

            log("escaped", type(exc).__name__, str(exc), traceback.format_exc())

    # Under @main, whose end runs the registered cleanups: every accepted one runs, signal or not.
    @graceful.main
    def main():
        with graceful.guard() as block:
            holder["block"] = block
            threads = [threading.Thread(target=racer, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            before = {m for m in sys.modules if m.startswith("graceful")}
            sys.settrace(tracer)
            # Each k starts from another name: the main thread is the first importer of each
            # module in turn, and the threads race it while that module's body runs.
            first_use(k % len(NAMES), "main", log, block)
            sys.settrace(None)  # the exits have sweeps of their own
            go.set()
            for t in threads:
                t.join()
            log("loaded", sorted({m for m in sys.modules if m.startswith("graceful")} - before))
        log("after", count[0])

    main()


quiet = [0]


def last(code, lines):
    # The threads race, so the main thread's count of steps varies: stop after a round of runs
    # in a row (one per starting name) that got no signal (k past the end of graceful's code).
    quiet[0] = 0 if any(line[0] == "at" for line in lines) else quiet[0] + 1
    return quiet[0] >= 2 * len(NAMES)


sweep(scenario, last, most=19998)
'''

#: The first uses the sweep makes, each in turn (the threads from other starting points), and the
#: lazily loaded modules each one loads: the sweep checks that its traced part loaded them all.
LAZY_USES: dict[str, tuple[str, ...]] = {
    "register_break": (),
    "Guard.register": (),
    "shutdown_event": (),
    "register": ("graceful._core.at_exit",),  # the first registration hooks the exit
    "at_fork": ("graceful._process.fork",),
    "track": (
        "graceful._process.backends",
        "graceful._process.backend",
        "graceful._process.children",
        "graceful._process.pidfd",
        "graceful._process.features",
        "graceful._process.pools",
        "graceful._process.stopping",
    ),
    "spawn": (
        "graceful._process.spawn",
        "graceful._process.launcher",
        "graceful._process.native_launch",
    ),
    "budget_remaining": ("graceful._core.budget",),
    "die_with_parent": ("graceful._process.parent_death",),
    "notify_ready": ("graceful._integrations.systemd",),
    "shutdown": ("graceful._integrations.frameworks",),
}
LAZY_NAMES = list(LAZY_USES)

#: Modules that a function of graceful imports when it runs but the sweep does not load, and why.
#: ``test_the_sweep_knows_every_function_level_import`` finds them in the code: a new one fails
#: it until the sweep loads it or it is listed here.
NOT_SWEPT = {
    "graceful": "the facade: `import graceful` loaded it",
    "graceful._core.machine": "the guard imports it: loaded before",
    "graceful._core.registry": "@main imports it: loaded before the sweep's first use",
    "graceful._core.signals": "the guard imports it (checks.py): loaded before",
    "graceful._core.timeline": "the guard imports it: loaded before",
    "graceful._core.libc": "a C handler found at a guard's entry (main thread), the dying "
    "thread's last act, or die_with_parent() in a process that graceful.spawn started",
    "graceful._core.receipt": "a guard's entry (main thread) with GRACEFUL_REPORT set",
    "graceful._core.coroutines": "a coroutine cleanup, run by the outermost guard's exit in the "
    "main thread (the exits' own sweeps above)",
    "graceful._asyncio.guard": "async with graceful.guard() (sweeps above), or a plain guard's "
    "entry once the program has loaded asyncio (asked whether its loop runs): main thread only",
    "graceful._asyncio.runner": "@graceful.main on a coroutine function: main thread only",
    "graceful._asyncio.cleanups": "graceful.shutdown()/ashutdown() in a framework's hook",
    "graceful._trio.driver": "trio's guard and @main, or a plain guard's entry once the program "
    "has loaded trio (asked whether it runs): main thread only",
}


def _function_level_imports() -> dict[str, list[str]]:
    """Each graceful module imported inside a function of src/graceful (not for type checkers;
    not in the CLI or the testing package, programs of their own), and where."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parent.parent / "src"
    found: dict[str, list[str]] = {}
    for path in sorted((src / "graceful").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[1] in ("_cli", "testing"):
            continue
        package = parts[:-1]
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for_checkers = {
                id(inner)
                for node in ast.walk(func)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for inner in ast.walk(node)
            }
            for node in ast.walk(func):
                if id(node) in for_checkers:
                    continue
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names if a.name.startswith("graceful")]
                elif isinstance(node, ast.ImportFrom):
                    if node.level == 0:
                        module = node.module or ""
                        base = module if module.startswith("graceful") else ""
                    else:
                        base = ".".join(package[: len(package) - node.level + 1])
                        base += f".{node.module}" if node.module else ""
                    for alias in node.names if base else ():
                        sub = f"{base}.{alias.name}"
                        is_module = (src / sub.replace(".", "/")).with_suffix(".py").exists()
                        names.append(sub if is_module else base)
                for name in names:
                    found.setdefault(name, []).append(f"{path.relative_to(src)}:{node.lineno}")
    return found


def _provided_roles(facade: Path) -> list[tuple[str, str]]:
    """What _core loads by a role's name (modules.provider): the module the facade's table
    names for each role, and where."""
    import ast

    roles = []
    for call in ast.walk(ast.parse(facade.read_text())):
        if isinstance(call, ast.Call) and ast.unparse(call.func) == "_modules.provide":
            table = call.args[1]
            assert isinstance(table, ast.Dict), ast.unparse(call)
            pairs = list(zip(table.keys, table.values))
            for keyword in call.keywords:  # drivers=((library, module), ...): the library's role
                assert keyword.arg == "drivers", ast.unparse(call)
                assert isinstance(keyword.value, ast.Tuple), ast.unparse(keyword)
                for entry in keyword.value.elts:
                    assert isinstance(entry, ast.Tuple), ast.unparse(entry)
                    library, module = entry.elts
                    pairs.append((library, module))
            for role, module in pairs:
                name = ast.unparse(module).replace("{__name__}", "graceful").strip("f'\"")
                assert role is not None
                roles.append((name, f"graceful/__init__.py:{call.lineno} ({ast.unparse(role)})"))
    return roles


def test_the_sweep_knows_every_function_level_import() -> None:
    """Every module a function loads on first use is loaded by the sweep below, or listed in
    NOT_SWEPT with the reason."""
    found = _function_level_imports()
    facade = Path(__file__).resolve().parent.parent / "src" / "graceful" / "__init__.py"
    for name, where in _provided_roles(facade):
        found.setdefault(name, []).append(where)
    assert "graceful._core.registry" in found, found  # the scan sees relative imports
    assert "graceful._core.at_exit" in found, found  # ... and the facade's table of roles
    assert "graceful._trio.driver" in found, found  # ... and of drivers
    swept = {module for modules in LAZY_USES.values() for module in modules}
    unknown = {m: where for m, where in found.items() if m not in swept and m not in NOT_SWEPT}
    assert not unknown, f"sweep their first use, or say in NOT_SWEPT why not: {unknown}"
    stale = set(NOT_SWEPT) - set(found)
    assert not stale, f"no function imports these any more; drop them from NOT_SWEPT: {stale}"


def test_a_signal_at_every_step_of_a_first_use_raced_by_threads(tmp_path: Path) -> None:
    """One sweep: the main thread makes the first use of every lazily loaded module in turn
    (LAZY_USES), each of the 8 threads the same uses from another starting point."""
    # Hundreds of forks of 9 threads each: 2-4 min on a quiet machine, up to ten at load 20;
    # each k ends by itself (every wait in it is bounded): this bounds the whole against a hang.
    results, err = run_every_step(tmp_path, LAZY, LAZY_NAMES, timeout=1800)
    assert "Traceback" not in err, err
    assert "watcher hit an error" not in err, err
    signalled = [r for r in results if any(line[0] == "at" for line in r[2])]
    assert len(signalled) >= 20, "the tracer saw too few steps: is it tracing graceful?"
    for k, code, lines in signalled:
        what = [line[0] for line in lines]
        assert code == -signal.SIGTERM, (k, lines)
        assert "escaped" not in what, (k, lines)
        # The signal may come after the inner block, in @main's exit: nothing after it.
        assert "after" not in what[what.index("at") :], (k, lines)
        accepted = [line[1] for line in lines if line[0] == "accepted"]
        for tag in accepted:
            assert what.count(tag) == 1, (k, tag, lines)
            assert what.count(tag + "-first") == 1, (k, tag, lines)
        for tag in {w for w in what if w.startswith(("t", "main"))}:
            assert what.count(tag) <= 1, (k, tag, lines)
    # The runs past the end (no signal) made every first use: each loaded what it names.
    swept = {module for modules in LAZY_USES.values() for module in modules}
    for k, _, lines in [r for r in results if r not in signalled]:
        loaded = next(line[1] for line in lines if line[0] == "loaded")
        assert swept <= set(loaded), (k, sorted(swept - set(loaded)))
    print(f"first uses: {len(signalled)} steps, Python {sys.version_info[:2]}")
