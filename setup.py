"""Only what pyproject.toml cannot say: the wheel carries the documentation.

``build_py`` copies README.md and docs/*.md into the built package as ``graceful/_docs/``, so that
``graceful docs`` works from any installed wheel while docs/ stays the one source of the text (an
editable install reads docs/ directly). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithDocs(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # graceful docs reads the checkout's docs/ itself
        target = Path(self.build_lib, "graceful", "_docs")
        target.mkdir(parents=True, exist_ok=True)
        for source in [HERE / "README.md", *sorted((HERE / "docs").glob("*.md"))]:
            shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildWithDocs})
