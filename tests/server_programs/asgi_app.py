"""An ASGI app: /slow takes SLOW seconds, /ready fails while draining. Without graceful its
lifespan shutdown is the cleanup (the best a server offers alone)."""

import asyncio

from common import GRACEFUL, SLOW, cleanup, draining, say


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                if not GRACEFUL:
                    cleanup()
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
