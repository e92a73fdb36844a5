"""The opt-in health and metrics endpoints (``--listen``), served by one daemon thread.

* ``GET /healthz``: 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reason": ...}``
  (``health.verdict``; status ``"stale"`` while serving the state's last-known-good values);
* ``GET /metrics``: Prometheus text format from ``metrics``, answered from a body at most a
  second old.

The server never calls into the loop and the loop never waits on it: the loop swaps in a new
frozen ``Snapshot`` (one reference assignment) and the server reads whichever is current.

Whoever can reach the port gets no more than a bounded share of inject: one thread, whatever
the number of clients; at most ``slots.connection_limit`` connections (a sixteenth of the
descriptor limit, 32 at most), the oldest one still waiting for its request pushed out when
a new one arrives; 2 s from accept to the end of the answer; a request head of 8 KiB; and
no traceback for anything a client does (a reset, a half-sent request, bytes that are not
HTTP): such a connection is closed and nothing is logged (``connections``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import socket
import threading
import time
from collections.abc import Callable

from ..config import split_listen
from ..errors import UsageError
from .connections import Connections
from .health import STALE, Board, verdict
from .metrics import CONTENT_TYPE, metrics_cache
from .slots import connection_limit
from .wire import TEXT, Request, answer

log = logging.getLogger(__name__)

BACKLOG = 128


class ObserveServer:
    """``/healthz`` and ``/metrics`` on ``listen`` (HOST:PORT, or a port alone: loopback)."""

    def __init__(self, listen: str, board: Board, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.listen = listen
        self.board = board
        self._clock = clock
        self._metrics = metrics_cache(board, clock=clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        """Bind and serve; a bad address or a port in use is a usage error."""
        host, port = split_listen(self.listen, "option --listen")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server(
                (host, port),
                family=family,
                backlog=BACKLOG,
                dualstack_ipv6=family == socket.AF_INET6 and socket.has_dualstack_ipv6(),  # [::] as before
            )
        except OSError as exc:
            raise UsageError(f"option --listen {self.listen}: cannot listen there: {exc.strerror}") from exc
        listener.setblocking(False)
        self._wake = socket.socketpair()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = connection_limit(nofile if nofile != resource.RLIM_INFINITY else 1 << 20)
        connections = Connections(listener, self.answer, limit=limit, clock=self._clock)
        self._thread = threading.Thread(
            target=connections.serve, args=(self._stop, self._wake[0]), name="inject-observe", daemon=True
        )
        self._thread.start()
        log.info("health and metrics on http://%s:%d/healthz and /metrics", _shown(host), port)

    def stop(self) -> None:
        """Stop serving; the thread closes the listening socket and every connection."""
        thread, self._thread = self._thread, None
        if thread is None or self._wake is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake[1].send(b"x")
        thread.join(timeout=1.0)
        for end in self._wake:
            end.close()

    def health(self) -> tuple[int, bytes]:
        """The status code and JSON body of ``/healthz``."""
        reason = verdict(self.board.read(), self._clock())
        if reason:
            status = STALE if reason.startswith(STALE + ":") else "unhealthy"
            return 503, json.dumps({"status": status, "reason": reason}).encode()
        return 200, json.dumps({"status": "ok"}).encode()

    def answer(self, request: Request) -> bytes:
        """The complete response to ``request``."""
        head_only = request.method == "HEAD"
        if request.path == "/healthz":
            code, body = self.health()
            return answer(code, "application/json", body, head_only=head_only)
        if request.path == "/metrics":
            return answer(200, CONTENT_TYPE, self._metrics.body(), head_only=head_only)
        return answer(404, TEXT, b"not found: try /healthz or /metrics\n", head_only=head_only)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
