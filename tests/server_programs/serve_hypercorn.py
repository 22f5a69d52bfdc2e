import asyncio

from asgi_app import app
from common import DRAIN, GRACEFUL, PORT, TIMEOUT, cleanup, log_graceful
from hypercorn.asyncio import serve
from hypercorn.config import Config

config = Config()
config.bind = [f"127.0.0.1:{PORT}"]
config.graceful_timeout = 5
config.errorlog = "-"
if GRACEFUL:
    import graceful
    from graceful.integrations import wait_for_stop

    log_graceful()  # "SIGTERM received": the test waits for it before a second signal

    @graceful.main(drain=DRAIN, timeout=TIMEOUT)
    async def main() -> None:
        graceful.register(cleanup)
        await serve(app, config, shutdown_trigger=wait_for_stop)

    main()
else:
    asyncio.run(serve(app, config))
