"""The one send of systemd's notify protocol: a datagram on an AF_UNIX socket
(``NOTIFY_SOCKET``, a path or an abstract ``@name``). Never blocks and never fails inject:
a full or missing socket costs that message only, and is logged once, at debug.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from .sdnotify import Notifier, notify_target

log = logging.getLogger(__name__)


class DatagramSender:
    """Sends each message as one datagram to ``address`` without waiting."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False

    def __call__(self, data: bytes) -> None:
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, self.address)
        except OSError as exc:
            if not self._failed:  # once: a socket that is gone stays gone
                self._failed = True
                log.debug("systemd notify socket: %s (message dropped)", exc.strerror or exc)

    def close(self) -> None:
        """Close the socket (a later send opens another)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _monotonic_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notifier_from(environ: Mapping[str, str]) -> Notifier | None:
    """A notifier for the socket systemd gave inject (``NOTIFY_SOCKET``), or None."""
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    target = notify_target(environ, os.getpid())
    if target is None:
        log.warning("NOTIFY_SOCKET %r is not an AF_UNIX path or @name; not notifying systemd", value)
        return None
    return Notifier(target, DatagramSender(target.address), _monotonic_us)
