"""A WSGI app: /slow takes SLOW seconds, /ready fails while draining."""

import time

from common import SLOW, draining, say


def app(environ, start_response):
    status, body = "200 OK", b"ok"
    if environ["PATH_INFO"] == "/slow":
        say("request started")
        time.sleep(SLOW)
        body = b"slow done"
    elif environ["PATH_INFO"] == "/ready" and draining():
        status = "503 Service Unavailable"
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
