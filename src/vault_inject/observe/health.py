"""Is inject healthy? The state the loop publishes for the health and metrics endpoints,
and the verdict on it. Pure: the HTTP server passes the snapshot and the time in.

Healthy means: the first render is done, the child runs (or, with no command, inject
watches), every output rendered at its last attempt, the last write of the files succeeded
(a failed one keeps /healthz failing through its retries, until one succeeds), the server
answered within the last poll interval, and nothing leased is close to its end without
having been renewed. A start from the state's last-known-good values while the server was
down (``stale``) is not healthy either, until the server answers.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

EXPIRY_MARGIN_FRACTION = 0.05  # renewals and re-reads happen by 90% of a TTL; 95% is late
EXPIRY_MARGIN_MAX_S = 60.0
STALE = "stale"  # the first word of the verdict (and /healthz's status) during a stale start


@dataclass(frozen=True)
class Expiry:
    """When one lease, certificate or the token ends unless renewed or re-read (monotonic)."""

    kind: str  # "lease", "certificate" or "token"
    what: str  # the configured secret path, or "inject's token"
    expires_at: float
    ttl_s: float


@dataclass(frozen=True)
class Snapshot:
    """What the loop knows, as of its last turn; read by the HTTP server's threads."""

    rendered: bool = False  # the first render is done
    supervising: bool = False  # there is a command (not ``inject watch``)
    child_pid: int = 0
    stopping: bool = False
    failing: tuple[str, ...] = ()  # outputs whose last render failed (kept at the last good)
    write_failing: tuple[str, ...] = ()  # outputs of a change whose files could not be written
    poll_interval_s: float = 60.0
    outage_since: float | None = None
    last_poll_ok_at: float | None = None
    expiries: tuple[Expiry, ...] = ()
    renders: int = 0
    render_failures: int = 0
    restarts: int = 0
    signals: Mapping[str, int] = field(default_factory=dict)  # reload signal name -> sent
    requests: Mapping[str, int] = field(default_factory=dict)  # outcome -> count
    stale_since: float | None = None  # started from the state's values at (epoch), until the server answers
    stale_saved_at: float | None = None  # when that state was saved (epoch)


STARTING = Snapshot()


class Board:
    """The latest snapshot: the loop publishes, the server's thread reads (one reference
    assignment each way: nothing to lock)."""

    def __init__(self, initial: Snapshot = STARTING) -> None:
        self._snapshot = initial

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the current one (called by the loop once per turn)."""
        self._snapshot = snapshot

    def read(self) -> Snapshot:
        """The current snapshot."""
        return self._snapshot


def verdict(snapshot: Snapshot, now: float) -> str:
    """Why inject is not healthy now, or "" when it is."""
    s = snapshot
    if not s.rendered:
        return "first render pending"
    if s.stopping:
        return "stopping"
    if s.supervising and not s.child_pid:
        return "child not running"
    if s.stale_since is not None:
        return (
            f"{STALE}: serving last-known-good values from the state since {_utc(s.stale_since)}"
            f" (saved {_utc(s.stale_saved_at or s.stale_since)}); the server has not answered yet"
        )
    if s.failing:
        return f"last render failed for {', '.join(s.failing)} (serving the last good version)"
    if s.write_failing:
        return f"last write failed for {', '.join(s.write_failing)} (files left as they were; retrying)"
    if s.outage_since is not None and now - s.outage_since > s.poll_interval_s:
        return f"server unreachable for {now - s.outage_since:.0f}s"
    for expiry in sorted(s.expiries, key=lambda e: e.expires_at):
        left_s = expiry.expires_at - now
        if left_s < min(EXPIRY_MARGIN_MAX_S, EXPIRY_MARGIN_FRACTION * expiry.ttl_s):
            return f"{expiry.kind} {expiry.what} expires in {max(0.0, left_s):.0f}s without renewal"
    return ""


def _utc(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def earliest_expiry_s(snapshot: Snapshot, now: float) -> dict[str, float]:
    """Seconds to the earliest expiry of each kind (lease, certificate, token)."""
    found: dict[str, float] = {}
    for expiry in snapshot.expiries:
        left_s = expiry.expires_at - now
        found[expiry.kind] = min(found.get(expiry.kind, math.inf), left_s)
    return found
