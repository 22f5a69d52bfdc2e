"""Read the receipts of a stop: ``graceful run --report FILE`` and ``GRACEFUL_REPORT=FILE``.

Each process of the tree that ends appends one JSON object on a line of its own (the supervisor
last, once its tree is gone); see docs/services.md for what one holds.
"""

from __future__ import annotations

import json
import os
from typing import Any, Union


def read_receipts(path: Union[str, os.PathLike[str]]) -> list[dict[str, Any]]:
    """Every receipt in ``path``, in the order the processes ended (an empty list if there is no
    file). A line that is not a JSON object raises ValueError naming the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    receipts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            receipt = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}:{number}: not a JSON receipt: {exc}") from None
        if not isinstance(receipt, dict):
            raise ValueError(f"{os.fspath(path)}:{number}: not a JSON object: {line[:80]!r}")
        receipts.append(receipt)
    return receipts
