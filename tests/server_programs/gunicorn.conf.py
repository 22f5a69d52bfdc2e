"""gunicorn with one worker of the class in $WORKER_CLASS (sync, gthread, or uvicorn's)."""

import os

from common import DRAIN, GRACEFUL, PORT, TIMEOUT, cleanup, say

bind = f"127.0.0.1:{PORT}"
workers = 1
worker_class = os.environ.get("WORKER_CLASS", "sync")
threads = 2 if worker_class == "gthread" else 1
graceful_timeout = 5
loglevel = "info"
control_socket_disable = True  # gunicorn 24+: no socket in $HOME shared by parallel tests

if GRACEFUL:
    import graceful
    import graceful.integrations.gunicorn

    hooks = graceful.integrations.gunicorn.hooks(drain=DRAIN, timeout=TIMEOUT)
    globals().update(hooks)

    def on_starting(server):
        graceful.register(cleanup)  # the master's

    def post_fork(server, worker):
        hooks["post_fork"](server, worker)
        graceful.register(cleanup)  # the worker's

    def post_worker_init(worker):
        hooks["post_worker_init"](worker)
        say("worker ready")

else:

    def post_worker_init(worker):
        say("worker ready")

    def worker_exit(server, worker):
        cleanup()

    def on_exit(server):
        cleanup()
