"""trio, and anyio on trio: ``async with graceful.guard()`` in a trio task and
``@graceful.main(backend="trio")``. Imported only by a program that runs trio."""
