"""Issue 21: the layers and the import graph, function-level imports included.

``_core`` < ``_process`` < ``_asyncio`` < ``_integrations`` < ``_cli``, ``testing``: a module
imports only from its own layer or lower ones, and no import cycle exists among graceful's
modules, whether the imports are at module level or inside functions (imports under
``if TYPE_CHECKING:`` are for type checkers only and are left out). The facade
(``graceful/__init__.py``) loads every layer on first use and is not part of any layer. No
module uses another module's private names (``_name``), by import or as ``module._name``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import graceful

ROOT = Path(graceful.__file__).parent
LAYERS = {
    "_core": 0,
    "_process": 1,
    "_asyncio": 2,
    "_trio": 2,
    "_integrations": 3,
    "integrations": 3,
    "_cli": 4,
    "testing": 4,
}

#: Arrows known to be wrong, each to be removed by the work named: the test fails on any other,
#: and on one of these once it is gone (so the list only shrinks). Empty since issue 21: ``_core``
#: reaches the drivers and the exit hook through the facade's table (``modules.provider``).
KNOWN_WRONG: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = ("graceful", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _target(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module ``from X import ...`` imports from, in ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _run_time(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and every node under it, but those under ``if TYPE_CHECKING:`` (its else runs)."""
    if isinstance(node, ast.If) and _is_type_checking(node):
        for statement in node.orelse:
            yield from _run_time(statement)
        return
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _run_time(child)


def _parse(path: Path, name: str) -> tuple[ast.Module, str]:
    """The module's tree, and the package its relative imports start from."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return ast.parse(path.read_text(), str(path)), package


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The graceful modules ``path`` imports at run time (anywhere in it)."""
    tree, package = _parse(path, name)
    found: set[str] = set()
    for node in _run_time(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("graceful"))
        elif isinstance(node, ast.ImportFrom):
            target = _target(node, package)
            if target.startswith("graceful"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
    found.discard(name)
    return {m for m in found if m in modules}


def _graph(*, all_arrows: bool = False) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    graph = {name: _imports(path, name, modules) for name, path in paths.items()}
    if not all_arrows:
        for source, target in KNOWN_WRONG:
            graph[source].discard(target)
    return graph


def test_the_known_wrong_arrows_are_still_there() -> None:
    graph = _graph(all_arrows=True)
    gone = sorted(arrow for arrow in KNOWN_WRONG if arrow[1] not in graph[arrow[0]])
    assert not gone, f"no longer there (take them off KNOWN_WRONG): {gone}"


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for module, targets in sorted(_graph().items()):
        mine = _layer(module)
        if mine is None:
            continue
        for target in sorted(targets):
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle_among_graceful_modules() -> None:
    graph = _graph()
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _private_uses(path: Path, name: str, modules: set[str]) -> list[str]:
    """The private names of other graceful modules that ``path`` uses at run time: imported by
    ``from X import _name``, or read as ``module._name`` through an imported module."""
    tree, package = _parse(path, name)
    found: list[str] = []
    imported: dict[str, str] = {}  # local name -> graceful module

    def private(attr: str) -> bool:
        return attr.startswith("_") and not attr.startswith("__")

    for node in _run_time(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(node, package)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    imported[alias.asname or alias.name] = sub
                elif target in modules and private(alias.name):
                    found.append(f"{name}:{node.lineno} imports {target}.{alias.name}")
        elif isinstance(node, ast.Import):
            imported.update(
                (a.asname, a.name) for a in node.names if a.asname and a.name in modules
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and private(node.attr)
        ):
            found.append(f"{name}:{node.lineno} uses {imported[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    found = [
        use for name, path in sorted(paths.items()) for use in _private_uses(path, name, set(paths))
    ]
    assert not found, "private names of another module (give them a public name):\n" + "\n".join(
        found
    )


def test_the_facade_provides_every_role_core_asks_for() -> None:
    """``_core`` loads what it may not import through the facade's table (``modules.provider``):
    every role it asks for by name is in the table, and each module offers what is called on it.
    The async drivers it asks by the table's list (``modules.drivers()``), never by name."""
    from graceful._core import modules

    assert modules.drivers() == ("trio", "asyncio")  # asked in this order; the last: the default
    wanted = {library: ("running", "enter", "exit", "run") for library in modules.drivers()}
    wanted["exit hook"] = ("prepare",)
    asked = set()
    for path in (ROOT / "_core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "provider":
                argument = node.args[0]
                if isinstance(argument, ast.Constant):
                    asked.add(argument.value)
    assert asked == {"exit hook"}, asked
    for role, functions in wanted.items():
        if role == "trio":
            pytest.importorskip("trio")
        module = modules.provider(role)
        for function in functions:
            assert callable(getattr(module, function, None)), (role, function)


def test_every_fork_step_exists() -> None:
    """``_core/forking.py`` names each module's step by string (it must not import the layers
    above): each named step exists, so none is skipped silently."""
    import importlib

    from graceful._core import forking

    for name, _ in forking.CHILD_STEPS:
        module = importlib.import_module(name)
        assert callable(getattr(module, "after_fork_in_child", None)), name
    hooks = importlib.import_module(forking._USER_HOOKS)
    for function in ("run_before", "run_after_in_parent", "run_after_in_child"):
        assert callable(getattr(hooks, function, None)), function
    watcher = importlib.import_module("graceful._core.watcher")
    for function in ("before_fork", "after_fork_in_parent"):
        assert callable(getattr(watcher, function, None)), function


def test_a_missing_fork_step_is_reported_not_skipped(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = """
import os, sys, graceful
from graceful._core import forking
graceful.register(print, "parent cleanup")  # loads the registry: its step runs in the child
forking.CHILD_STEPS = forking.CHILD_STEPS + (("graceful._core.registry.x", "a step that is not"),)
sys.modules["graceful._core.registry.x"] = type(sys)("graceful._core.registry.x")
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
graceful.unregister(print)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "a step that is not failed" in proc.stderr, proc.stderr
    assert "AttributeError" in proc.stderr, proc.stderr


# --- A third async driver: one new module and one line in the facade's table ------------------

TOY_LIBRARY = '''
"""A toy event loop: runs one coroutine that never waits."""
current = None


def run(coro):
    global current
    current = coro
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        current = None
    raise RuntimeError("a toy loop runs no coroutine that waits")
'''

TOY_DRIVER = '''
"""The toy loop's driver: it says when its library runs, and shows that it was chosen."""
import sys

import toyloop


def running():
    return toyloop.current is not None


async def enter(guard):
    print("toy enter")
    return guard


async def exit(guard, exc):
    print("toy exit")
    return False


def run(func, args, kwargs, options, loop_factory):
    sys.exit(toyloop.run(func(*args, **kwargs)))
'''

TOY_PROGRAM = """
import asyncio, sys  # asyncio loaded, not running: the toy loop's driver is still the one
import graceful, toyloop

assert graceful.__file__.startswith(sys.argv[1]), graceful.__file__
try:
    graceful.main(backend="nothing")
except ValueError as exc:
    print(exc)
with graceful.guard():  # toyloop loaded, not running: a plain guard is fine
    print("plain guard")


@graceful.main(backend="toyloop")
async def main():
    async with graceful.guard():
        print("in the block")
    try:
        with graceful.guard():
            pass
    except RuntimeError as exc:
        print(exc)
    return 3


main()
"""


def test_a_third_driver_is_one_new_module_and_one_line_in_the_facade(tmp_path: Path) -> None:
    """Issue 25.5: a copy of graceful with one new module (``_toy/driver.py``) and one line added
    to the facade's table drives a third library: ``async with graceful.guard()`` in its task is
    the new driver's, a plain guard there is refused, ``@graceful.main(backend=)`` runs it. No
    ``_core`` module (nor any other) is edited."""
    import os
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "graceful"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "_toy").mkdir()
    (copy / "_toy" / "driver.py").write_text(TOY_DRIVER)
    facade = (copy / "__init__.py").read_text()
    line = '        ("toyloop", f"{__name__}._toy.driver"),\n'
    assert facade.count("    drivers=(\n") == 1
    (copy / "__init__.py").write_text(facade.replace("    drivers=(\n", "    drivers=(\n" + line))
    (tmp_path / "toyloop.py").write_text(TOY_LIBRARY)
    (tmp_path / "program.py").write_text(TOY_PROGRAM)

    originals = {p.relative_to(ROOT) for p in ROOT.rglob("*.py")}
    copies = {p.relative_to(copy) for p in copy.rglob("*.py")}
    assert copies - originals == {Path("_toy/driver.py")}
    changed = [p for p in originals if (copy / p).read_text() != (ROOT / p).read_text()]
    assert changed == [Path("__init__.py")]

    proc = subprocess.run(
        [sys.executable, str(tmp_path / "program.py"), str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == [
        "@graceful.main: backend must be 'asyncio', 'toyloop' or 'trio', got 'nothing' (anyio "
        "programs choose the one they run on, as with anyio.run(..., backend=))",
        "plain guard",
        "toy enter",
        "in the block",
        "toy exit",
        "graceful.guard(): an event loop is running in this thread; use `async with "
        "graceful.guard():` inside a coroutine (a signal then cancels the task that entered it), "
        "or @graceful.main on your `async def main()`",
    ], proc.stderr
