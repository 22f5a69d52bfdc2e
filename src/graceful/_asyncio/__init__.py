"""asyncio: ``@graceful.main`` on a coroutine function, ``async with graceful.guard()``, and
cleanups awaited in the program's own event loop. Imported only when an async feature is used."""
