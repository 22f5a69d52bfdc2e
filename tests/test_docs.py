"""The documentation travels with the package (issue 24): messages name a `graceful docs` topic,
never a path of the source tree."""

from __future__ import annotations

import ast
import os
import pty
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cli_support import GRACEFUL
from helpers import TIMEOUT

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "graceful"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of every module, class and function in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_message_points_to_a_path_of_the_source_tree() -> None:
    """A user with a wheel has no docs/ folder: a message names `graceful docs TOPIC`."""
    offending = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and re.search(r"\bdocs/\w", node.value)
            ):
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offending, "\n".join(offending)


def test_every_topic_a_message_names_exists() -> None:
    topics = {path.stem for path in (ROOT / "docs").glob("*.md")}
    named = set()
    for path in sorted(SRC.rglob("*.py")):
        named.update(re.findall(r"graceful docs ([a-z]\w*)", path.read_text()))
    assert named, "no message names a topic: did the spelling change?"
    assert named <= topics, named - topics


# --- graceful docs ---------------------------------------------------------------------------


def docs_cli(*args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GRACEFUL, "docs", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        **popen,
    )


def test_docs_lists_every_document_with_its_title() -> None:
    out = docs_cli()
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert set(listed) == {path.stem for path in (ROOT / "docs").glob("*.md")} | {"readme"}
    assert listed["cli"].split(None, 1)[1] == "The `graceful` command"
    assert listed["readme"].split(None, 1)[1] == "graceful"


@pytest.mark.parametrize("topic", ["cli", "signals", "SIGNALS.md"])
def test_docs_prints_a_topic_plain_when_not_a_terminal(topic: str) -> None:
    out = docs_cli(topic)
    assert out.returncode == 0, out.stderr
    stem = topic.lower().removesuffix(".md")
    assert out.stdout == (ROOT / "docs" / f"{stem}.md").read_text()


def test_docs_readme_is_the_readme() -> None:
    assert docs_cli("readme").stdout == (ROOT / "README.md").read_text()


def test_docs_pages_on_a_terminal(tmp_path: Path) -> None:
    paged = tmp_path / "paged"
    primary, secondary = pty.openpty()
    try:
        out = subprocess.run(
            [*GRACEFUL, "docs", "fork"],
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env=dict(os.environ, PAGER=f"cat > {paged}", MANPAGER=f"cat > {paged}", TERM="xterm"),
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert out.returncode == 0, out.stderr
    assert paged.read_text() == (ROOT / "docs" / "fork.md").read_text()


def test_an_unknown_topic_gets_the_list() -> None:
    out = docs_cli("nope")
    assert out.returncode == 2
    assert out.stderr.startswith("usage: graceful docs ")
    assert "graceful docs: error: no topic 'nope'; the topics are: asyncio, backends," in out.stderr


# --- the built wheel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this checkout (so nothing is written into it)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "LICENSE", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "docs", "bin"):
        shutil.copytree(ROOT / name, tree / name, ignore=junk)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(tree), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,  # a build environment is installed first: slow on a busy machine
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{built.stdout}\n{built.stderr}")
    (found,) = out.glob("graceful_end-*.whl")
    return found


def test_the_wheel_carries_every_document_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for source in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
            assert archive.read(f"graceful/_docs/{source.name}").decode() == source.read_text()
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_file).decode() == (ROOT / "LICENSE").read_text()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    assert not [h for h in headers if h.startswith("License:")]  # the old form, superseded
    versions = {h.rsplit(" :: ", 1)[1] for h in headers if h.startswith("Classifier: Prog")}
    assert {"3.9", "3.10", "3.11", "3.12", "3.13"} <= versions


def test_graceful_docs_works_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """Unpacked as pip would install it, away from any checkout: every topic is there."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); import graceful._cli as c; "
        f"assert c.__file__.startswith({str(site)!r}), c.__file__; sys.exit(c.main(sys.argv[1:]))"
    )
    for topic in ["cli", "readme"]:
        out = subprocess.run(
            [sys.executable, "-c", code, "docs", topic],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        source = ROOT / ("README.md" if topic == "readme" else f"docs/{topic}.md")
        assert out.stdout == source.read_text()


def test_the_readmes_links_work_on_the_index_page_too() -> None:
    """README.md is the package index's long description, where a relative link resolves nowhere:
    links are absolute; a document is named as its `graceful docs TOPIC`."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert [t for t in targets if not t.startswith(("https://", "http://", "#"))] == []
    topics = {path.stem for path in (ROOT / "docs").glob("*.md")} | {"readme"}
    named = set(re.findall(r"`graceful docs ([a-z]\w*)`", readme))
    assert named, "the README names no topic"
    assert named <= topics, named - topics
