"""Debounce with ``wait = { min, max }`` (consul-template semantics). Pure.

After a change, act once nothing else changed for ``min``; a steady stream of
changes still acts ``max`` after the first one. ``min = 0`` acts at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Debouncer:
    """Tracks one pending burst of changes; ``due_at`` says when to act on it."""

    min_s: float = 0.0
    max_s: float = 0.0
    _first_at: float | None = None
    _last_at: float | None = None

    def touch(self, now: float) -> None:
        """Record a change at ``now``."""
        if self._first_at is None:
            self._first_at = now
        self._last_at = now

    def due_at(self) -> float | None:
        """When the pending burst should be acted on (``None`` when nothing is pending)."""
        if self._first_at is None or self._last_at is None:
            return None
        quiet_at = self._last_at + self.min_s
        return min(quiet_at, self._first_at + max(self.max_s, self.min_s))

    def due(self, now: float) -> bool:
        """True when the pending burst should be acted on now."""
        at = self.due_at()
        return at is not None and now >= at

    def reset(self) -> None:
        """Forget the pending burst (it was acted on)."""
        self._first_at = self._last_at = None
