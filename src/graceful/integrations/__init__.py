"""graceful inside the servers people run: uvicorn, gunicorn, hypercorn, aiohttp, celery.

Those servers own the signals and stop gracefully by themselves; graceful stands in front of
their stop signals, drains first when ``drain=`` says so (``graceful.draining`` set, the server
still serving), gives the server its own stop, then runs its cleanups and ends the process by
the signal. One module per server, each importing its server only when called:

- ``graceful.integrations.uvicorn``: ``run(server)``, ``await serve(server)``
- ``graceful.integrations.aiohttp``: ``run_app(app, ...)``
- ``graceful.integrations.gunicorn``: hooks for a ``gunicorn.conf.py``
- ``graceful.integrations.celery``: ``install()``
- ``graceful.integrations.hypercorn``: ``install()`` in each worker of ``hypercorn --workers N``

and two for any other server: :func:`wait_for_stop` (an awaitable shutdown trigger: hypercorn's
``shutdown_trigger=``, an ``aiohttp.web.AppRunner`` program) and :func:`stopping` (a block in
which the stop signals call ``stop(signum)``). docs/servers.md has the recipes and the table of
what each server does with each signal, alone and with graceful.
"""

from .._integrations.servers import stopping, wait_for_stop

__all__ = ["stopping", "wait_for_stop"]
