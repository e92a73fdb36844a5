"""When to poll, and what to say about it. Pure: the supervisor asks, a fake clock answers.

* Fixed rate: the interval counts from the start of the last poll, jittered so a fleet
  spreads out; a poll in flight is never doubled.
* An outage (the server did not answer) backs off with jitter, capped at the interval, and
  is logged once when it starts and once when it ends.
* A per-secret error is logged when it first appears or changes, not every poll.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping

from ..client import backoff
from ..errors import InjectError
from ..model import Request

log = logging.getLogger(__name__)

OUTAGE_INITIAL_S = 1.0


class PollTimer:
    """The next poll's time, the outage count, and the errors already reported."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._started_at: float | None = clock()  # the first render was the first read
        self.next_at = clock() + backoff.jittered(interval_s)
        self.outage_attempts = 0
        self._errors: dict[Request, str] = {}  # per request (polls: never a pinned version)

    def due(self) -> bool:
        """True when a poll should start now."""
        return self._clock() >= self.next_at

    def started(self) -> None:
        """A poll began (it is rescheduled when it reports back)."""
        self._started_at = self._clock()
        self.next_at = math.inf

    def skipped(self) -> None:
        """Nothing to poll this time: look again one interval later."""
        self._started_at = self._clock()
        self.reschedule()

    def now(self) -> None:
        """Poll at once (SIGHUP without a child)."""
        self.next_at = self._clock()

    def reschedule(self) -> None:
        """The next regular poll, one (jittered) interval after the start of the last one."""
        now = self._clock()
        start = self._started_at if self._started_at is not None else now
        self.next_at = max(now, start + backoff.jittered(self.interval_s))

    def finished(self, outage: InjectError | None, *, quiet: bool = False) -> None:
        """A poll reported back; schedule the next one (sooner, with backoff, after an outage).
        ``quiet``: the outage's lines are someone else's (a start from the state)."""
        if outage is None:
            if self.outage_attempts and not quiet:
                log.info("server reachable again after %d failed poll(s)", self.outage_attempts)
            self.outage_attempts = 0
            self.reschedule()
            return
        self.outage_attempts += 1
        if self.outage_attempts == 1 and not quiet:
            log.warning("server unreachable, keeping the last good secrets: %s", outage)
        interval = self.interval_s
        delay = backoff.delay_s(
            self.outage_attempts, initial_s=OUTAGE_INITIAL_S, max_s=interval, jitter_s=interval / 4
        )
        self.next_at = self._clock() + delay

    def report(self, failed: Mapping[Request, InjectError], fresh: Iterable[Request]) -> None:
        """Log each per-secret error once (again only when it changes); forget fixed ones."""
        for key, exc in failed.items():
            if self._errors.get(key) != str(exc):
                self._errors[key] = str(exc)
                log.error("%s (keeping the last good version)", exc)
        for key in fresh:
            self._errors.pop(key, None)
