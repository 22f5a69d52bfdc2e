"""systemd's notify protocol, spoken directly: one datagram of ``KEY=VALUE`` lines to
``$NOTIFY_SOCKET`` (``@`` at its start names the abstract namespace), as ``man sd_notify`` says.

On the first signal graceful sends ``STOPPING=1`` and ``EXTEND_TIMEOUT_USEC`` covering the time
left until the process will be gone (the drain and the deadline, or the budget from above, plus a
margin), and again when the drain ends, so systemd's own stop timeout
(``TimeoutStopSec``) never SIGKILLs a shutdown that is inside graceful's deadline.
``graceful.notify_ready()`` sends ``READY=1``. Nothing is sent when ``NOTIFY_SOCKET`` is unset, and
a broken socket never breaks a shutdown: the send is non-blocking and its errors are swallowed.
"""

from __future__ import annotations

import os
import time

from .._core.machine import machine
from .._core.signals import name

TYPE_CHECKING = False  # typing costs import time; annotations are strings here
if TYPE_CHECKING:
    from typing import Any, Optional

ENV = "NOTIFY_SOCKET"
#: Added to graceful's own deadline in EXTEND_TIMEOUT_USEC: the last words and the re-raise.
MARGIN = 1.0


def _address() -> Optional[str]:
    path = os.environ.get(ENV)
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(*lines: str) -> bool:
    """Send one notification; False when there is no socket or the send failed."""
    address = _address()
    if address is None:
        return False
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto("\n".join(lines).encode(), address)
    except OSError:
        return False
    return True


def notify_ready(status: Optional[str] = None) -> bool:
    """Tell systemd (``Type=notify``) that the service is ready: ``READY=1``.

    Returns False, doing nothing, where ``NOTIFY_SOCKET`` is not set (not under systemd, or not
    a notify service). ``status`` is shown by ``systemctl status``.
    """
    lines = ["READY=1"]
    if status:
        lines.append(f"STATUS={status}")
    return notify(*lines)


def _usec(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _on_shutdown(event: str, facts: dict[str, Any]) -> None:
    """The machine's listener (watcher thread): tell systemd what the shutdown needs."""
    if _address() is None:
        return
    ends_by = facts.get("ends_by")  # when the process will be gone, at the latest
    # From the real time left (a budget from above may have cut it), not a fixed sum.
    extend = None if ends_by is None else _usec(max(0.0, ends_by - time.monotonic()) + MARGIN)
    if event == "stopping":
        lines = ["STOPPING=1", f"STATUS=stopping after {name(facts['signal'])}"]
        if extend is not None:
            lines.append(f"EXTEND_TIMEOUT_USEC={extend}")
        notify(*lines)
    elif event == "drain_end" and extend is not None:
        notify(f"EXTEND_TIMEOUT_USEC={extend}")


machine.add_listener(_on_shutdown)
