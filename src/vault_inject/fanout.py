"""Run one function over many items on a few daemon threads, and wait for them.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at interpreter
exit, so one request stuck on a hung server would hold inject's exit (after a TERM) for
as long as the request takes. These workers are daemon threads: once the caller has
given up waiting (a signal, an exit), nothing holds the process.

Protocol: items are handed out one at a time from a shared iterator. The first exception
raised by ``fn`` stops the hand-out (the items not started yet are skipped), every worker
finishes the item it holds, and then that first exception is raised in the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Local(threading.local):
    worker = False


_LOCAL = _Local()


def in_worker() -> bool:
    """True on a fan_out worker thread: its caller waits for it (``deadline`` runs this
    thread's server requests in place rather than on a helper thread)."""
    return _LOCAL.worker


def fan_out(items: Sequence[T], fn: Callable[[T], None], *, workers: int, name: str = "inject-fan") -> None:
    """Call ``fn(item)`` for every item, up to ``workers`` at a time, on daemon threads named
    ``name-N``; return when all are done, raising the first exception ``fn`` raised."""
    if len(items) <= 1 or workers <= 1:
        for item in items:
            fn(item)
        return
    shared: _Shared[T] = _Shared(iter(items))
    threads = [
        threading.Thread(target=shared.work, args=(fn,), name=f"{name}-{n}", daemon=True)
        for n in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if shared.error is not None:
        raise shared.error


class _Shared(Generic[T]):
    """The iterator the workers take items from, and the first failure."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def _next(self) -> tuple[T] | None:
        with self._lock:
            if self.error is not None:
                return None
            for item in self._items:
                return (item,)
            return None

    def work(self, fn: Callable[[T], None]) -> None:
        """Take items until none are left or one failed."""
        _LOCAL.worker = True
        while True:
            taken = self._next()
            if taken is None:
                return
            try:
                fn(taken[0])
            except BaseException as exc:
                with self._lock:
                    if self.error is None:
                        self.error = exc
                return
