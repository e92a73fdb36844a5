"""Which connections the endpoints keep, and for how long. Pure: the server passes the time in.

At most ``limit`` connections are open at once, each for at most ``timeout_s`` from its
accept to the last byte of its answer (a slow reader is cut like a slow sender). A new
connection that finds every slot taken pushes out the oldest one still waiting for its
request: idle or trickling connections cannot keep a probe out, and the listener never holds
more than ``limit`` descriptors, whatever arrives.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)

MAX_CONNECTIONS = 32  # probes and scrapers open one or two at a time
REQUEST_TIMEOUT_S = 2.0  # accept to answered; a probe's own timeout is usually 1-3 s


def connection_limit(nofile: int) -> int:
    """Connections to allow under a descriptor limit of ``nofile``: at most one in sixteen
    descriptors, so that the loop's own work (server connections, files) always has the rest."""
    return max(1, min(MAX_CONNECTIONS, nofile // 16))


@dataclass
class _Slot:
    opened_at: float
    answering: bool = False


class Slots(Generic[Key]):
    """Open connections by key, in accept order, with their deadlines."""

    def __init__(self, *, limit: int = MAX_CONNECTIONS, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self._open: dict[Key, _Slot] = {}  # insertion order is accept order

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, key: Key, now: float) -> Key | None:
        """Take in a new connection; the one to close to make room (the oldest still waiting
        for its request, or ``key`` itself when every slot is answering), or None."""
        victim: Key | None = None
        if len(self._open) >= self.limit:
            waiting = (k for k, slot in self._open.items() if not slot.answering)
            victim = next(waiting, key)
            if victim == key:
                return key
            del self._open[victim]
        self._open[key] = _Slot(opened_at=now)
        return victim

    def answering(self, key: Key) -> None:
        """The request of ``key`` was read; it is being answered (it is no longer pushed out)."""
        if key in self._open:
            self._open[key].answering = True

    def drop(self, key: Key) -> None:
        """``key`` was closed."""
        self._open.pop(key, None)

    def overdue(self, now: float) -> list[Key]:
        """Connections past their deadline (to be closed; the caller drops them)."""
        return [k for k, slot in self._open.items() if now - slot.opened_at >= self.timeout_s]

    def next_deadline(self) -> float | None:
        """When the oldest connection runs out of time (None when none is open)."""
        first = next(iter(self._open.values()), None)
        return first.opened_at + self.timeout_s if first is not None else None
