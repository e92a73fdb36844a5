"""What the loop counts for the health and metrics endpoints, and the snapshot it publishes.

Owned by the loop's thread: it counts as events come in and, once per turn, hands a frozen
``Snapshot`` to whoever serves it (``observe``), so the server never calls into the loop.
Server requests are counted from the poll and re-read results the loop sees: one per
secret read, by outcome, and one ``unreachable`` per poll an outage cut short.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from ..errors import InjectError, PermissionDenied, SecretNotFound, UnreachableError
from ..observe import Expiry, Snapshot
from ..process import ChildController
from .sources import PollDone


def outcome_of(error: InjectError) -> str:
    """The metrics label of a failed read: a fixed word, never the message."""
    if isinstance(error, PermissionDenied):
        return "denied"
    if isinstance(error, SecretNotFound):
        return "not_found"
    if isinstance(error, UnreachableError):
        return "unreachable"
    return "error"


class Stats:
    """Counters, the outage clock, and the outputs whose last render failed."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.renders = 1  # the first render, done before the loop starts
        self.render_failures = 0
        self.failing: set[str] = set()
        self.write_failing: frozenset[str] = frozenset()  # until a write succeeds
        self.requests: Counter[str] = Counter()
        self.outage_since: float | None = None
        self.last_poll_ok_at = clock()
        self.expiries: tuple[Expiry, ...] = ()
        self.stale: tuple[float, float] | None = None  # (since, saved at) during a start from the state

    def read(self, done: PollDone) -> None:
        """A poll or re-read reported back: count its requests."""
        self.requests["ok"] += len(done.fresh)
        self.requests.update(outcome_of(error) for error in done.failed.values())
        if done.outage is not None:
            self.requests["unreachable"] += 1

    def polled(self, done: PollDone) -> None:
        """A poll reported back: the outage starts, goes on, or is over."""
        now = self._clock()
        if done.outage is None:
            self.outage_since, self.last_poll_ok_at = None, now
        elif self.outage_since is None:
            self.outage_since = now

    def applied(
        self,
        *,
        status: str,
        failed: Sequence[str],
        rendered: Iterable[str],
        outputs: Iterable[str] = (),
    ) -> None:
        """A re-render of ``outputs`` reported back (``rendered``: the outputs that rendered).

        An output whose write failed stays reported until an attempt that includes it writes
        (or finds nothing to write): the retries do not clear it, a success of other outputs
        does not either."""
        self.renders += 1
        self.failing = (self.failing - set(rendered)) | set(failed)
        if status == "write_failed":
            self.write_failing |= frozenset(outputs)
        else:
            self.write_failing -= frozenset(outputs)
        if failed or status in ("write_failed", "vetoed"):
            self.render_failures += 1

    def snapshot(
        self, child: ChildController | None, poll_interval_s: float, expiries: Iterable[Expiry] | None
    ) -> Snapshot:
        """The state as of now (``expiries`` None: unknown this turn, keep the last ones)."""
        if expiries is not None:
            self.expiries = tuple(expiries)
        return Snapshot(
            rendered=True,
            supervising=child is not None,
            child_pid=child.pid if child is not None else 0,
            stopping=child is not None and child.stop_signal is not None,
            failing=tuple(sorted(self.failing)),
            write_failing=tuple(sorted(self.write_failing)),
            poll_interval_s=poll_interval_s,
            outage_since=self.outage_since,
            last_poll_ok_at=self.last_poll_ok_at,
            expiries=self.expiries,
            renders=self.renders,
            render_failures=self.render_failures,
            restarts=child.restarts if child is not None else 0,
            signals={signal.Signals(n).name: c for n, c in child.reloads.items()} if child else {},
            requests=dict(self.requests),
            stale_since=self.stale[0] if self.stale else None,
            stale_saved_at=self.stale[1] if self.stale else None,
        )
