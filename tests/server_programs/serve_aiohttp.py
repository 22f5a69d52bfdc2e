import asyncio

from aiohttp import web
from common import DRAIN, GRACEFUL, PORT, SLOW, TIMEOUT, cleanup, draining, log_graceful, say


async def slow(request):
    say("request started")
    await asyncio.sleep(SLOW)
    return web.Response(text="slow done")


async def ready(request):
    return web.Response(status=503 if draining() else 200)


async def index(request):
    return web.Response(text="ok")


async def on_cleanup(app):
    cleanup()


app = web.Application()
app.add_routes([web.get("/slow", slow), web.get("/ready", ready), web.get("/", index)])
options = dict(host="127.0.0.1", port=PORT, shutdown_timeout=5, print=say, access_log=None)

if __name__ == "__main__" and GRACEFUL:
    import graceful
    from graceful.integrations import aiohttp as graceful_aiohttp

    log_graceful()  # "SIGTERM received": the test waits for it before a second signal

    @graceful.main(drain=DRAIN, timeout=TIMEOUT)
    def main() -> None:
        graceful.register(cleanup)
        graceful_aiohttp.run_app(app, **options)

    main()
elif __name__ == "__main__":
    app.on_cleanup.append(on_cleanup)
    web.run_app(app, **options)
