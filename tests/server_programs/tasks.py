"""A celery app: ``tasks.slow`` takes SLOW seconds. Without graceful its cleanups are celery's own
shutdown signals (main process and pool process), connected with strong references."""

import logging
import os
import time

from celery import Celery, signals
from celery.worker import request
from common import GRACEFUL, SLOW, cleanup, say

app = Celery("tasks", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
# The main process logs "Task accepted: tasks.slow[...]" once its pool process has taken the task
# (celery's DEBUG line): the test signals then, never while the main process is still handing the
# task over (celery's cold shutdown hangs then, alone too: see docs/servers.md).
logging.getLogger("celery.worker.request").setLevel(logging.DEBUG)
request.__optimize__()  # celery reads that level once, when it imports the module


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
