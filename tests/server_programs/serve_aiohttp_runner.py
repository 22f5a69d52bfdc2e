"""aiohttp's AppRunner in the program's own main. Alone: the runner's own signal handling (it
raises GracefulExit in the loop). With graceful: wait_for_stop(), then the runner's cleanup."""

import asyncio

from aiohttp import web
from common import DRAIN, GRACEFUL, PORT, TIMEOUT, cleanup, log_graceful, say
from serve_aiohttp import app, on_cleanup


async def serve(wait) -> None:
    runner = web.AppRunner(app, shutdown_timeout=5, handle_signals=not GRACEFUL)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    say(f"Running on http://127.0.0.1:{PORT}")
    try:
        await wait()
    finally:
        await runner.cleanup()


if GRACEFUL:
    import graceful
    from graceful.integrations import wait_for_stop

    log_graceful()  # "SIGTERM received": the test waits for it before a second signal

    @graceful.main(drain=DRAIN, timeout=TIMEOUT)
    async def main() -> None:
        graceful.register(cleanup)
        await serve(wait_for_stop)

    main()
else:
    app.on_cleanup.append(on_cleanup)
    asyncio.run(serve(asyncio.Event().wait))
