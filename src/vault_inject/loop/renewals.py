"""Leases, certificates and the token, driven from the loop but run on a worker.

``Lifecycle`` decides and calls the server; this class makes sure it is used by one thread at
a time: while its ``life`` job runs (renewals, re-logins, lease lookups) the loop does not
touch it, and what the loop wants meanwhile (track new secrets, postpone re-reads, log in
again) waits in ``_later`` until the job reports back. Re-reads of leases that cannot be
renewed further run as a ``refresh`` job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import PermissionDenied
from ..model import Request, Secret
from .lifecycle import Lifecycle
from .sources import PollDone, ReadFn, Workers, read_all

if TYPE_CHECKING:  # annotations only: importing the client loads hvac and requests
    from ..client import Login

log = logging.getLogger(__name__)

IN_FLIGHT_ATTEMPT = 4  # a re-read in flight is not started again for ~8s


class Renewals:
    """The loop's handle on ``Lifecycle``: timers, worker jobs, and what waits for them."""

    def __init__(self, life: Lifecycle, workers: Workers, refresh_read: ReadFn) -> None:
        self.life = life
        self._workers = workers
        self._refresh_read = refresh_read
        self._later: list[Callable[[], None]] = []
        self._refresh_attempts = 0
        self._relogin_tried = False

    @property
    def busy(self) -> bool:
        """True while the lifecycle worker runs."""
        return self._workers.busy("life")

    def next_at(self) -> float | None:
        """When a renewal or re-read is due (None while the worker has it)."""
        return None if self.busy else self.life.next_at()

    def run_due(self, now: float) -> None:
        """Start the renewals and re-reads that are due."""
        if (self.next_at() or math.inf) <= now:
            self._workers.start("life", self.life.run_due)

    def track(self, fresh: Mapping[Request, Secret]) -> None:
        """Plan renewal or re-read of newly read secrets."""
        self._with_life(lambda: self.life.track(fresh))

    def relogin(self, reason: str) -> None:
        """Get a new token on the worker (a token file changed, the server rejects ours)."""

        def job() -> list[Request]:
            self.life.relogin(reason=reason)
            return []  # a new token re-plans the leases it affects itself

        self._with_life(lambda: self._start(job))

    def adopt(self, grant: Login, token: str) -> None:
        """Use the token another client got (after a start from the state) from now on."""
        self._with_life(lambda: self.life.adopt(grant, token))

    def _start(self, job: Callable[[], list[Request]]) -> None:
        self._workers.start("life", job)

    def token_rejected(self, done: PollDone) -> bool:
        """After a poll: when the server no longer accepts the token (revoked or expired from
        outside), log in once more and say so; the next poll catches up."""
        rejected = any(isinstance(e, PermissionDenied) and e.token_rejected for e in done.failed.values())
        if rejected and not self._relogin_tried and self.life.can_relogin:
            self._relogin_tried = True
            self.relogin("the server no longer accepts inject's token")
            return True
        self._relogin_tried = self._relogin_tried and rejected
        return False

    def on_life(self, value: object) -> None:
        """The lifecycle job reported back: run what waited, start the re-reads it asked for."""
        later, self._later = self._later, []
        for action in later:
            self._with_life(action)
        keys = list(value) if isinstance(value, list) else []
        if keys:
            self._workers.start("refresh", lambda: read_all(self._refresh_read, keys))
            # In flight (or waiting for the one in flight): not due again soon.
            self._with_life(lambda: self._postpone(keys, IN_FLIGHT_ATTEMPT))

    def on_refresh(self, done: PollDone) -> None:
        """Re-reads reported back; during an outage, the ones not done are tried later."""
        if done.outage is None:
            self._refresh_attempts = 0
            return
        self._refresh_attempts += 1
        attempts = self._refresh_attempts
        self._with_life(lambda: self._postpone([k for k in self.life.plans if k not in done.fresh], attempts))

    def _postpone(self, keys: Iterable[Request], attempt: int) -> None:
        for key in keys:
            self.life.postpone(key, attempt)

    def _with_life(self, action: Callable[[], None]) -> None:
        if self.busy:
            self._later.append(action)
        else:
            action()
