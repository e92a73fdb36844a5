"""``/metrics``: the Prometheus text built from the snapshot the loop last published, by
``prometheus_client`` in a registry of its own (not the process-global one), with the child's
memory and CPU read with psutil; and the cache that answers scrapes with a body at most
``MAX_AGE_S`` old, so that a flood of scrapes costs a lookup each, not a build and a walk of
the child's process tree.

Labels are fixed words (outcomes, kinds, signal names): no value, path or token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .health import Board, Snapshot, earliest_expiry_s, verdict

CONTENT_TYPE: str = CONTENT_TYPE_LATEST
MAX_AGE_S = 1.0  # a scrape is answered from a body at most this old (Prometheus scrapes every 15 s+)

Usage = tuple[float, float]  # (resident bytes, cpu seconds) of the child and its descendants


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
        yield _gauge(
            "inject_stale",
            "1 while serving the state's last-known-good values (a start while the server was down).",
            0.0 if s.stale_since is None else 1.0,
        )
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


class MetricsCache:
    """The ``/metrics`` body, built again only when the last one is ``max_age_s`` old."""

    def __init__(
        self,
        build: Callable[[], bytes],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self._build = build
        self._clock = clock
        self._max_age_s = max_age_s
        self._body = b""
        self._built_at: float | None = None

    def body(self) -> bytes:
        """The current body: the cached one while it is fresh enough."""
        now = self._clock()
        if self._built_at is None or now - self._built_at >= self._max_age_s:
            self._body, self._built_at = self._build(), now
        return self._body


def metrics_cache(board: Board, *, clock: Callable[[], float] = time.monotonic) -> MetricsCache:
    """The cache of ``board``'s metrics, in a registry of their own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(board, clock=clock))
    return MetricsCache(lambda: bytes(generate_latest(registry)), clock=clock)
