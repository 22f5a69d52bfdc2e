"""A celery app: ``tasks.slow`` takes SLOW seconds. Without graceful its cleanups are celery's own
shutdown signals (main process and pool process), connected with strong references."""

import os
import time

from celery import Celery, signals
from common import GRACEFUL, SLOW, cleanup, say

app = Celery("tasks", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task
def slow():
    say("request started")
    time.sleep(SLOW)
    return "done"


if GRACEFUL:
    import graceful
    import graceful.integrations.celery

    graceful.integrations.celery.install()

    @signals.worker_init.connect(weak=False)
    def main_process(**_):
        graceful.register(cleanup)

    @signals.worker_process_init.connect(weak=False)
    def pool_process(**_):
        graceful.register(cleanup)

else:

    @signals.worker_shutdown.connect(weak=False)
    def main_process(**_):
        cleanup()

    @signals.worker_process_shutdown.connect(weak=False)
    def pool_process(**_):
        cleanup()
