"""Reading the server's file audit log: which requests, when, by which token."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

SECRET_PREFIX = "secret/data/bench/"  # noqa: S105 - a KV path prefix, not a password


@dataclass(frozen=True)
class Request:
    """One request the server audited."""

    time_s: float  # Unix time
    path: str
    operation: str
    accessor: str

    @property
    def is_secret_read(self) -> bool:
        """A read of one of the benchmark's KV secrets."""
        return self.operation == "read" and self.path.startswith(SECRET_PREFIX)


def offset(path: str) -> int:
    """The audit log's current size: pass it to ``read`` to see only later requests."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def read(path: str, start: int = 0, end: int | None = None) -> list[Request]:
    """Every request logged between byte offsets ``start`` and ``end``."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read() if end is None else handle.read(max(0, end - start))
    return [req for line in data.splitlines() if (req := _parse(line)) is not None]


def _parse(line: bytes) -> Request | None:
    try:
        entry = json.loads(line)
    except ValueError:  # a line still being written at the tail
        return None
    if entry.get("type") != "request":
        return None
    request = entry.get("request") or {}
    auth = entry.get("auth") or {}
    return Request(
        time_s=parse_time(str(entry.get("time", ""))),
        path=str(request.get("path", "")),
        operation=str(request.get("operation", "")),
        accessor=str(auth.get("accessor", "")),
    )


def parse_time(text: str) -> float:
    """RFC 3339 with up to nanoseconds (``2026-01-02T03:04:05.123456789Z``) as Unix time."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return base.timestamp() + (float("0." + fraction) if fraction else 0.0)


def by_accessor(requests: Iterable[Request], accessor: str) -> list[Request]:
    """The requests made with one token."""
    return [r for r in requests if r.accessor == accessor]


def cycles(requests: Sequence[Request]) -> float:
    """Poll cycles seen: the mean number of reads per watched secret. (A median count would
    miss the cycle the window's edges cut in two, when a poll's reads are spread out.)"""
    counts = Counter(r.path for r in requests if r.is_secret_read)
    return sum(counts.values()) / len(counts) if counts else 0.0


def histogram(times: Iterable[float], start_s: float, end_s: float, bucket_s: float) -> list[int]:
    """Counts of ``times`` per ``bucket_s`` bucket over [start_s, end_s)."""
    buckets = [0] * max(1, int((end_s - start_s) / bucket_s))
    for t in times:
        index = int((t - start_s) / bucket_s)
        if 0 <= index < len(buckets):
            buckets[index] += 1
    return buckets
