"""Leave a daemon behind: double fork, setsid, then the grandchild sleeps. Prints its PID."""

import os
import sys
import time

r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, f"{os.getpid()}\n".encode())
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.wait()
print(f"daemon {os.read(r, 100).decode().strip()}", flush=True)
print("ready", flush=True)
if "--wait" in sys.argv:
    time.sleep(300)
