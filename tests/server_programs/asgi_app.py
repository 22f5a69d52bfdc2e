"""An ASGI app: /slow takes SLOW seconds, /ready fails while draining. Without graceful its
lifespan shutdown is the cleanup (the best a server offers alone); run by uvicorn's or hypercorn's
command with graceful, the lifespan registers the cleanup (after hypercorn's ``install()``) and
calls ``graceful.ashutdown()``."""

import asyncio
import os

from common import GRACEFUL, SLOW, cleanup, draining, say

#: Run by uvicorn's command: graceful's recipe is the lifespan's (register, then ashutdown()).
LIFESPAN_RECIPE = GRACEFUL and os.environ.get("LIFESPAN_RECIPE") == "1"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if LIFESPAN_RECIPE:
                    import graceful
                    import graceful.integrations.hypercorn

                    # hypercorn --workers: its master's SIGTERM must not cut what this worker
                    # finishes (under uvicorn, which handles SIGTERM itself, it does nothing).
                    graceful.integrations.hypercorn.install()
                    graceful.register(cleanup)
                await send({"type": "lifespan.startup.complete"})
            else:
                if not GRACEFUL:
                    cleanup()
                elif LIFESPAN_RECIPE:
                    import graceful

                    await graceful.ashutdown()  # the recipe for uvicorn's command
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, body = 200, b"ok"
    if scope["path"] == "/slow":
        say("request started")
        await asyncio.sleep(SLOW)
        body = b"slow done"
    elif scope["path"] == "/ready":
        status = 503 if draining() else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})
