"""The endpoints' one thread: a selector loop that accepts, reads one request head, sends
one answer and closes, within the bounds of ``slots`` (how many, how long) and ``wire`` (how
big). Nothing a client does raises out of it or reaches the log: a reset, a half-sent
request or bytes that are not HTTP only close that connection. Running out of descriptors
pauses new connections for a moment (logged once), so the loop's own work gets them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .slots import Slots
from .wire import Refused, Request, read_head, refusal

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # accepts per wake-up, so a flood of connects cannot starve the answers
ACCEPT_PAUSE_S = 0.2  # after "no descriptor left": the loop's own work comes first
RECV_BYTES = 4096
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
IDLE_WAKE_S = 5.0


class Connections:
    """The selector loop: accepts, reads one request head, sends one answer, closes."""

    def __init__(
        self,
        listener: socket.socket,
        respond: Callable[[Request], bytes],
        *,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self._respond = respond
        self._clock = clock
        self._slots: Slots[int] = Slots(limit=limit)
        self._socks: dict[int, socket.socket] = {}
        self._inbox: dict[int, bytearray] = {}
        self._outbox: dict[int, memoryview] = {}
        self._selector = selectors.DefaultSelector()
        self._paused_until: float | None = None
        self._reported: set[str] = set()

    def serve(self, stop: threading.Event, wake: socket.socket) -> None:
        """Serve until ``stop`` is set (and ``wake`` readable); then close everything."""
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(wake, selectors.EVENT_READ, "wake")
        try:
            while not stop.is_set():
                self._turn()
        finally:
            for fd in list(self._socks):
                self._close(fd)
            self._selector.close()
            self._listener.close()

    def _turn(self) -> None:
        now = self._clock()
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        for key, mask in self._selector.select(self._wait_s(now)):
            if key.data == "listen":
                self._accept()
            elif key.data == "conn":
                self._service(key.fd, mask)
        for fd in self._slots.overdue(self._clock()):
            self._close(fd)

    def _wait_s(self, now: float) -> float:
        due = [t for t in (self._slots.next_deadline(), self._paused_until) if t is not None]
        return max(0.0, min([now + IDLE_WAKE_S, *due]) - now)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._pause(exc)
                    return
                continue  # the client gave up before the accept (ECONNABORTED and kin)
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        fd = sock.fileno()
        victim = self._slots.admit(fd, self._clock())
        if victim == fd:
            sock.close()
            return
        if victim is not None:
            self._close(victim)
        self._socks[fd], self._inbox[fd] = sock, bytearray()
        self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _pause(self, exc: OSError) -> None:
        """No descriptor left: stop accepting for a moment, so the loop's own work gets them."""
        self._report(f"listener: cannot accept a connection ({exc.strerror}); pausing new connections")
        self._selector.unregister(self._listener)
        self._paused_until = self._clock() + ACCEPT_PAUSE_S

    def _service(self, fd: int, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and fd in self._inbox:
                self._read(fd)
            if fd in self._outbox:
                self._send(fd)
        except BlockingIOError:
            return
        except OSError:  # reset, broken pipe: the client's business, nothing to log
            self._close(fd)
        except Exception as exc:  # a bug answering: say so once, keep serving
            self._report(f"listener: internal error answering a request: {type(exc).__name__}")
            self._close(fd)

    def _read(self, fd: int) -> None:
        data = self._socks[fd].recv(RECV_BYTES)
        if not data:
            self._close(fd)
            return
        inbox = self._inbox[fd]
        inbox += data
        found = read_head(bytes(inbox))
        if found is None:
            return
        del self._inbox[fd]
        reply = refusal(found) if isinstance(found, Refused) else self._respond(found)
        self._outbox[fd] = memoryview(reply)
        self._slots.answering(fd)
        self._selector.modify(self._socks[fd], selectors.EVENT_WRITE, "conn")

    def _send(self, fd: int) -> None:
        left = self._outbox[fd]
        left = left[self._socks[fd].send(left) :]
        self._outbox[fd] = left
        if not left:
            self._close(fd)

    def _close(self, fd: int) -> None:
        sock = self._socks.pop(fd, None)
        self._inbox.pop(fd, None)
        self._outbox.pop(fd, None)
        self._slots.drop(fd)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()

    def _report(self, line: str) -> None:
        """Log ``line`` once: what a client can cause must not fill inject's log."""
        if line not in self._reported:
            self._reported.add(line)
            log.warning("%s", line)
