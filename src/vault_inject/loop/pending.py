"""The outputs waiting to be re-rendered, why, and when to act on them. Pure.

Changes are debounced (``wait`` min/max); a change whose files could not be written (disk
full, read-only) is marked again after a backoff, since otherwise it would wait for the next
secret change; each distinct write failure is logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from ..client import backoff
from .debounce import Debouncer

log = logging.getLogger(__name__)

WRITE_RETRY_S = 2.0  # first retry of a failed write; doubles up to WRITE_RETRY_MAX_S
WRITE_RETRY_MAX_S = 60.0


class Pending:
    """Marked outputs and their causes, the debounce, and the write retry."""

    def __init__(self, debounce: Debouncer, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.debounce = debounce
        self._clock = clock
        self._outputs: set[str] = set()
        self._causes: list[str] = []
        self._retry: tuple[float, frozenset[str], str] | None = None
        self._failures = 0
        self._error = ""

    def mark(self, outputs: Iterable[str], causes: Iterable[str]) -> None:
        """Outputs to re-render, and why (``secret/app v3 -> v4``)."""
        outputs = set(outputs)
        if outputs:
            self._outputs |= outputs
            self._causes.extend(c for c in causes if c not in self._causes)
            self.debounce.touch(self._clock())

    def next_at(self) -> float | None:
        """When the debounce is due (None when nothing waits)."""
        return self.debounce.due_at()

    def retry_at(self) -> float | None:
        """When a failed write is tried again."""
        return self._retry[0] if self._retry is not None else None

    def take_due(self) -> tuple[frozenset[str], str] | None:
        """The outputs to act on now and their causes, or None when not due yet."""
        now = self._clock()
        if self._retry is not None and now >= self._retry[0]:
            _, outputs, causes = self._retry
            self._retry = None
            self.mark(outputs, [causes])
        if not self.debounce.due(now):
            return None
        self.debounce.reset()
        outputs, self._outputs = frozenset(self._outputs), set()
        causes, self._causes = "; ".join(self._causes) or "change", []
        return outputs, causes

    def write_failed(self, outputs: frozenset[str], causes: str, error: str) -> None:
        """The secrets were taken in but the files could not be written: try again later."""
        if error != self._error:  # once per distinct failure, not every retry
            self._error = error
            log.error("%s; files left as they were, child not told; will retry", error)
        self._failures += 1
        delay = backoff.delay_s(self._failures, initial_s=WRITE_RETRY_S, max_s=WRITE_RETRY_MAX_S)
        self._retry = (self._clock() + delay, outputs, causes)

    def written(self) -> None:
        """Files were written: the failure streak, if any, is over."""
        if self._failures:
            log.info("files written after %d failed attempt(s)", self._failures)
        self._failures, self._error = 0, ""
