"""``graceful docs [TOPIC]``: the documentation, from the installed package.

The wheel carries the repository's ``docs/*.md`` and ``README.md`` as ``graceful/_docs/``
(``setup.py`` copies them at build time; docs/ stays the one source). An editable install has no
copy: there the files are read from the source checkout the package was installed from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NoReturn, Optional

#: The topic that holds README.md.
README = "readme"


def folder() -> Optional[Path]:
    """Where the documents are: the package's copy, else the source checkout's docs/."""
    here = Path(__file__).resolve().parent.parent  # graceful/
    shipped = here / "_docs"
    if shipped.is_dir():
        return shipped
    checkout = here.parent.parent / "docs"  # src/graceful -> the repository
    if (checkout.parent / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return None


def topics() -> dict[str, Path]:
    """Topic name -> file, in name order; README.md is the topic ``readme``."""
    where = folder()
    if where is None:
        return {}
    found = {path.stem: path for path in where.glob("*.md") if path.stem.upper() != "README"}
    readme = where / "README.md" if (where / "README.md").is_file() else where.parent / "README.md"
    if readme.is_file():
        found[README] = readme
    return dict(sorted(found.items()))


def title(path: Path) -> str:
    """The document's first heading, without its ``#``."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""


def main(topic: Optional[str], fail: Callable[[str], NoReturn]) -> int:
    """List the topics, or show one (paged on a terminal); ``fail`` reports a usage error."""
    found = topics()
    if not found:
        fail(
            "no documentation in this installation (graceful/_docs is missing): reinstall "
            "graceful-end from a wheel, or read docs/ in the source"
        )
    if topic is None:
        width = max(len(name) for name in found)
        print("Topics (graceful docs TOPIC):")
        for name, path in found.items():
            print(f"  {name.ljust(width)}  {title(path)}")
        return 0
    chosen = found.get(topic.lower().removesuffix(".md"))
    if chosen is None:
        fail(f"no topic {topic!r}; the topics are: {', '.join(found)}")
    text = chosen.read_text(encoding="utf-8")
    if sys.stdout.isatty():
        import pydoc

        pydoc.pager(text)  # $MANPAGER, $PAGER, less or more; plain when stdin is no terminal
    else:
        sys.stdout.write(text)
    return 0
