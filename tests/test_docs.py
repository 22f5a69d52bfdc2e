"""The documentation travels with the package (issue 24): messages name a `graceful docs` topic,
never a path of the source tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
