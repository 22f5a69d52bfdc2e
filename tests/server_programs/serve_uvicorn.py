import uvicorn
from asgi_app import app
from common import DRAIN, GRACEFUL, PORT, TIMEOUT, cleanup, log_graceful

server = uvicorn.Server(
    uvicorn.Config(app, host="127.0.0.1", port=PORT, access_log=False, timeout_graceful_shutdown=5)
)
if GRACEFUL:
    import graceful
    from graceful.integrations import uvicorn as graceful_uvicorn

    log_graceful()  # "SIGTERM received": the test waits for it before a second signal

    @graceful.main(drain=DRAIN, timeout=TIMEOUT)
    def main() -> None:
        graceful.register(cleanup)
        graceful_uvicorn.run(server)

    main()
else:
    server.run()
