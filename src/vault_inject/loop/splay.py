"""Restart splay: act on a change after a random delay in ``0..splay_s``, so a fleet of
replicas that all see a new version at once does not restart at the same moment. Pure.

A change that arrives while an action waits joins it (the strongest wins, see ``actions``)
and keeps the time already drawn. Nothing here delays a shutdown: the loop stops looking
at the held action once the child is stopping.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ..process import Action

log = logging.getLogger(__name__)


class Splay:
    """The action waiting for its random moment, and when that is."""

    def __init__(
        self,
        splay_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.splay_s = splay_s
        self._clock = clock
        self._rand = rand
        self._held: tuple[float, Action, str] | None = None

    def hold(self, action: Action, causes: str) -> None:
        """Keep ``action`` until its moment (drawn now; a held one is joined instead)."""
        if self._held is not None:
            at, held, held_causes = self._held
            self._held = (at, held.merged(action), f"{held_causes}; {causes}")
            return
        delay_s = self.splay_s * self._rand() if self.splay_s > 0 else 0.0
        if delay_s > 0:
            log.info("%s; acting on the change in %.1fs (splay)", causes, delay_s)
        self._held = (self._clock() + delay_s, action, causes)

    def next_at(self) -> float | None:
        """When the held action is due (None when nothing waits)."""
        return self._held[0] if self._held is not None else None

    def take_due(self) -> tuple[Action, str] | None:
        """The action to take now and its causes, or None."""
        if self._held is None or self._clock() < self._held[0]:
            return None
        _, action, causes = self._held
        self._held = None
        return action, causes
