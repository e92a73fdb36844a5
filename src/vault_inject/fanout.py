"""Run one function over many items on a few daemon threads, and wait for them.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at interpreter
exit, so one request stuck on a hung server would hold inject's exit (after a TERM) for
as long as the request takes. These workers are daemon threads: once the caller has
given up waiting (a signal, an exit), nothing holds the process.

Protocol: items are handed out one at a time from a shared iterator. The first exception
raised by ``fn`` stops the hand-out (the items not started yet are skipped), every worker
finishes the item it holds, and then that first exception is raised in the caller.

How many workers: enough to keep inject's one core (the GIL) busy while the others wait,
and no more. Every extra thread that only waits for the GIL costs CPU in switches: with a
server on loopback, 8 readers spend more CPU per read than 2 and finish no sooner; with
a server a few milliseconds away, 2 readers would leave the core idle most of the time. So
``fan_out`` starts FIRST_WORKERS, and once they have done a few items it sizes the pool by
what those items measured (``workers_for``, Little's law): an item that took ``wall``
seconds, of which ``cpu`` on the worker's own CPU, needs ``wall / cpu`` items in flight to
keep the core busy, up to ``workers``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

FIRST_WORKERS = 2
SIZED_AFTER = 2  # items per first worker done before the pool is sized


class _Local(threading.local):
    worker = False


_LOCAL = _Local()


def in_worker() -> bool:
    """True on a fan_out worker thread: its caller waits for it (``deadline`` runs this
    thread's server requests in place rather than on a helper thread)."""
    return _LOCAL.worker


def workers_for(wall_s: float, cpu_s: float, *, most: int) -> int:
    """How many workers keep one core busy, from the items done so far: ``wall_s`` they
    took in all and ``cpu_s`` of it on their own CPU; at least FIRST_WORKERS, at most
    ``most``. Pure."""
    if cpu_s <= 0:
        return most  # nothing measured on the CPU: all waiting
    return max(min(FIRST_WORKERS, most), min(most, math.ceil(wall_s / cpu_s)))


def fan_out(items: Sequence[T], fn: Callable[[T], None], *, workers: int, name: str = "inject-fan") -> None:
    """Call ``fn(item)`` for every item, up to ``workers`` at a time, on daemon threads named
    ``name-N``; return when all are done, raising the first exception ``fn`` raised."""
    if len(items) <= 1 or workers <= 1:
        for item in items:
            fn(item)
        return
    most = min(workers, len(items))
    shared: _Shared[T] = _Shared(iter(items), fn, name=name, most=most)
    shared.start(min(FIRST_WORKERS, most))
    shared.wait()
    if shared.error is not None:
        raise shared.error


class _Shared(Generic[T]):
    """The iterator the workers take items from, the pool's size, and the first failure."""

    def __init__(self, items: Iterator[T], fn: Callable[[T], None], *, name: str, most: int) -> None:
        self._items = items
        self._fn = fn
        self._name = name
        self._most = most
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._started = 0
        self._running = 0
        self._sized = False
        self._measured = (0, 0.0, 0.0)  # items done by the first workers, their wall and CPU s
        self.error: BaseException | None = None

    def start(self, count: int) -> None:
        """Start ``count`` more workers (within the pool's size)."""
        with self._lock:
            count = min(count, self._most - self._started)
            first = self._started
            self._started += count
            self._running += count
        for n in range(first, first + count):
            threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True).start()

    def wait(self) -> None:
        """Return once every worker has ended."""
        with self._all_done:
            while self._running:
                self._all_done.wait()

    def _next(self) -> tuple[T] | None:
        with self._lock:
            if self.error is not None:
                return None
            for item in self._items:
                return (item,)
            return None

    def _work(self) -> None:
        """Take items until none are left or one failed."""
        _LOCAL.worker = True
        try:
            while (taken := self._next()) is not None:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    self._fn(taken[0])
                except BaseException as exc:
                    with self._lock:
                        if self.error is None:
                            self.error = exc
                    return
                self._done_one(time.perf_counter() - wall, time.thread_time() - cpu)
        finally:
            with self._all_done:
                self._running -= 1
                self._all_done.notify_all()

    def _done_one(self, wall_s: float, cpu_s: float) -> None:
        """Count one item done; once the first workers did enough, size the pool."""
        with self._lock:
            if self._sized:
                return
            done, wall_sum, cpu_sum = self._measured
            self._measured = (done + 1, wall_sum + wall_s, cpu_sum + cpu_s)
            if done + 1 < SIZED_AFTER * FIRST_WORKERS:
                return
            self._sized = True
            more = workers_for(wall_sum + wall_s, cpu_sum + cpu_s, most=self._most) - self._started
        if more > 0:
            self.start(more)
