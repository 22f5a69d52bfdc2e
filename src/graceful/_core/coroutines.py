"""Running an ``async def`` cleanup where no event loop will: in a fresh one, to completion."""

from __future__ import annotations

from typing import Any


def run_fresh(coro: Any) -> None:
    """Run ``coro`` in a new event loop (asyncio is imported only now)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()
