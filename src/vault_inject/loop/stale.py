"""A start from the state's last-known-good values while the server was down
(``[state] start_stale``), until the server answers again.

Meanwhile the poll job is a reconnect attempt (with the loop's outage backoff): a token (the
state's, or a login), the state's leases and certificates the server still knows, and a
fresh read of everything else in use. When it succeeds the loop takes the result like any
poll (a changed value re-renders and restarts or signals the child per template) and the
start is over: one line when it begins (``app``), one when it ends (here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InjectError, UnreachableError
from ..model import Request, Secret
from .sources import PollDone, read_all

if TYPE_CHECKING:  # annotations only: importing the client loads hvac and requests
    from ..client import Login, VaultClient

log = logging.getLogger(__name__)

Reconnect = Callable[["VaultClient"], "tuple[Login, dict[Request, Secret]]"]


@dataclass(frozen=True)
class StartedStale:
    """What ``app`` knows of a start from the state: how to reconnect, when the state was
    saved and when inject started from it (epoch seconds)."""

    reconnect: Reconnect
    saved_at: float
    since: float


@dataclass(frozen=True)
class Recovered:
    """The server answered: the login and what was read (taken over or read again)."""

    grant: Login
    done: PollDone
    token: str = field(default="", repr=False)


class StaleStart:
    """The loop's side of a start from the state, while it lasts."""

    def __init__(
        self, stale: StartedStale, client: VaultClient, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.stale = stale
        self._client = client  # the poll worker's: the attempt runs as the poll job
        self._wall = wall_clock
        self.active = True

    def attempt(self, keys: Sequence[Request]) -> Callable[[], PollDone | Recovered]:
        """The job that tries to reach the server and read ``keys`` again."""

        def job() -> PollDone | Recovered:
            try:
                grant, taken = self.stale.reconnect(self._client)
            except UnreachableError as exc:
                return PollDone(outage=exc)
            except InjectError as exc:  # it answers, but will not let inject in (yet)
                log.error("the server answers but inject could not log in: %s", exc)
                return PollDone(outage=UnreachableError(str(exc)))
            done = read_all(self._client.fetch, [key for key in keys if key not in taken])
            done.fresh.update(taken)
            return Recovered(grant, done, self._client.token)

        return job

    def ended(self, recovered: Recovered) -> None:
        """The server answered: one line, and the loop runs as after any start."""
        self.active = False
        done = recovered.done
        log.info(
            "server reachable again after a start from the state (%ds on last-known-good values);"
            " %d secret(s) read again, %d failed",
            max(0, int(self._wall() - self.stale.since)),
            len(done.fresh),
            len(done.failed),
        )
