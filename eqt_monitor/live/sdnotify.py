"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) in a few lines, no dependency.

systemd passes a datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace); the service sends ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=…`` to it.
Without the variable (not started by systemd) every call is a no-op.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd; ``enabled`` is False outside a notify-type service."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self.address:
            # non-blocking: a reader that stops reading must never stall the service
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=running"``) as one message; False if not sent."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(states).encode(), self.address)
            return True
        except OSError as exc:  # systemd gone or the socket unusable: the service itself goes on
            log.warning("systemd notify to %s failed: %s", self.address.replace("\0", "@"), exc)
            return False

    def watchdog_interval(self) -> float | None:
        """Half of ``$WATCHDOG_USEC`` in seconds (how often to ping), when this process is watched."""
        usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return None
        return int(usec) / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
