"""The opt-in health and metrics endpoints (``--listen``): an HTTP server on its own daemon
threads that serves the snapshot the loop last published.

* ``GET /healthz``: 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reason": ...}``
  (``health.verdict``);
* ``GET /metrics``: Prometheus text format, built by ``prometheus_client`` from the snapshot
  at each scrape, in a registry of its own (not the process-global one); child memory and
  CPU are read with psutil at scrape time.

The server never calls into the loop and the loop never waits on it: the loop swaps in a new
frozen ``Snapshot`` (one reference assignment) and the handlers read whichever is current.
Labels are fixed words (outcomes, kinds, signal names): no value, path or token.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import split_listen
from ..errors import UsageError
from .health import STARTING, Snapshot, earliest_expiry_s, verdict

log = logging.getLogger(__name__)

Usage = tuple[float, float]  # (resident bytes, cpu seconds) of the child and its descendants


class Board:
    """The latest snapshot: the loop publishes, the server's threads read."""

    def __init__(self, initial: Snapshot = STARTING) -> None:
        self._snapshot = initial

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the current one (called by the loop once per turn)."""
        self._snapshot = snapshot

    def read(self) -> Snapshot:
        """The current snapshot."""
        return self._snapshot


def child_usage(pid: int) -> Usage | None:
    """Memory (RSS) and CPU time of ``pid`` and its live descendants; None when it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    rss, cpu = 0.0, 0.0
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
        except psutil.Error:
            continue  # exited between the walk and the read
    return rss, cpu


class SnapshotCollector:
    """Turns the current snapshot into metric families at each scrape."""

    def __init__(
        self,
        board: Board,
        *,
        clock: Callable[[], float] = time.monotonic,
        usage: Callable[[int], Usage | None] = child_usage,
    ) -> None:
        self._board = board
        self._clock = clock
        self._usage = usage

    def collect(self) -> Iterator[Metric]:
        """Every metric, from one snapshot and one reading of the clock."""
        s, now = self._board.read(), self._clock()
        yield _counter("inject_renders", "Render passes (the first render and every re-render).", s.renders)
        yield _counter(
            "inject_render_failures",
            "Re-renders in which an output failed, or the files could not be written or were vetoed.",
            s.render_failures,
        )
        yield _counter(
            "inject_child_restarts", "Child restarts because what it consumes changed.", s.restarts
        )
        yield _labelled_counter(
            "inject_child_signals", "Reload signals sent to the child.", "signal", s.signals
        )
        yield _labelled_counter(
            "inject_server_requests", "Secret reads by polls and re-reads, by outcome.", "outcome", s.requests
        )
        outage_s = now - s.outage_since if s.outage_since is not None else 0.0
        yield _gauge(
            "inject_outage_seconds", "How long the server has been unreachable (0: reachable).", outage_s
        )
        if s.last_poll_ok_at is not None:
            yield _gauge(
                "inject_last_poll_success_age_seconds",
                "Seconds since the last poll the server answered.",
                now - s.last_poll_ok_at,
            )
        expiry = GaugeMetricFamily(
            "inject_expiry_seconds", "Seconds to the earliest expiry, by kind.", labels=["kind"]
        )
        for kind, left_s in sorted(earliest_expiry_s(s, now).items()):
            expiry.add_metric([kind], left_s)
        yield expiry
        yield _gauge("inject_healthy", "1 when /healthz answers 200.", 0.0 if verdict(s, now) else 1.0)
        yield from self._child_metrics(s)

    def _child_metrics(self, s: Snapshot) -> Iterator[Metric]:
        usage = self._usage(s.child_pid) if s.child_pid else None
        if usage is None:
            return
        rss, cpu = usage
        yield _gauge("inject_child_resident_memory_bytes", "RSS of the child and its descendants.", rss)
        yield _counter(
            "inject_child_cpu_seconds", "CPU time (user+system) of the child and its descendants.", cpu
        )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled_counter(
    name: str, documentation: str, label: str, values: Mapping[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


class ObserveServer:
    """``/healthz`` and ``/metrics`` on ``listen`` (HOST:PORT), served from daemon threads."""

    def __init__(self, listen: str, board: Board, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.listen = listen
        self.board = board
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(board, clock=clock))
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Bind and serve; a bad address or a port in use is a usage error."""
        host, port = split_listen(self.listen, "option --listen")
        try:
            server = _server_class(host)((host, port), _handler_for(self))
        except OSError as exc:
            raise UsageError(f"option --listen {self.listen}: cannot listen there: {exc.strerror}") from exc
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="inject-observe", daemon=True).start()
        log.info("health and metrics on http://%s/healthz and /metrics", self.listen)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def health(self) -> tuple[int, bytes]:
        """The status code and JSON body of ``/healthz``."""
        reason = verdict(self.board.read(), self._clock())
        if reason:
            return 503, json.dumps({"status": "unhealthy", "reason": reason}).encode()
        return 200, json.dumps({"status": "ok"}).encode()

    def metrics(self) -> bytes:
        """The body of ``/metrics``."""
        return bytes(generate_latest(self.registry))


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    """IPv6 for ``[::1]:9102``-style addresses, IPv4 (or a host name) otherwise."""
    return _Server6 if ":" in host else ThreadingHTTPServer


def _handler_for(observer: ObserveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "inject"

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/healthz":
                code, body = observer.health()
                self._answer(code, "application/json", body)
            elif path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, observer.metrics())
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

        def _answer(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would drown inject's own log

    return Handler
