"""fan_out: every item done on daemon worker threads, the first error raised, and a pool
sized by what the first items measured: as many workers as keep the core busy while the
others wait, from FIRST_WORKERS up to the limit."""

from __future__ import annotations

import threading
import time

import pytest

from vault_inject import fanout
from vault_inject.fanout import FIRST_WORKERS, fan_out, workers_for


def workers_seen(fn: object, *, items: int, workers: int) -> set[str]:
    """The names of the threads ``fn`` ran on over ``items`` items."""
    names: set[str] = set()
    lock = threading.Lock()

    def call(_: int) -> None:
        with lock:
            names.add(threading.current_thread().name)
        fn()  # type: ignore[operator]

    fan_out(list(range(items)), call, workers=workers, name="t")
    return names


def busy(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU (not waiting)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_fan_out_runs_every_item_on_daemon_threads() -> None:
    """Every item is handled, on daemon threads when there is more than one."""
    seen: list[tuple[int, bool]] = []
    fan_out(list(range(20)), lambda n: seen.append((n, threading.current_thread().daemon)), workers=4)
    assert sorted(n for n, _ in seen) == list(range(20))
    assert all(daemon for _, daemon in seen)


def test_fan_out_raises_the_first_error_and_stops_handing_out() -> None:
    """The first exception is raised after the workers finish; items not started are skipped."""
    started: list[int] = []

    def work(n: int) -> None:
        started.append(n)
        raise ValueError(f"item {n}")

    with pytest.raises(ValueError, match="item"):
        fan_out(list(range(50)), work, workers=2)
    assert len(started) <= 2


def test_fan_out_of_one_item_runs_inline() -> None:
    """A single item runs on the caller's thread."""
    threads: list[threading.Thread] = []
    fan_out([1], lambda n: threads.append(threading.current_thread()), workers=8)
    assert threads == [threading.current_thread()]


# --- how many workers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall_s", "cpu_s", "most", "expected"),
    [
        (1.0, 1.0, 8, FIRST_WORKERS),  # all CPU: more threads would only wait for the GIL
        (2.5, 1.0, 8, 3),  # loopback server: a bit of waiting
        (6.0, 1.0, 8, 6),
        (60.0, 1.0, 8, 8),  # a far server: as many as allowed
        (1.0, 0.0, 8, 8),  # nothing on the CPU at all (fsync)
        (60.0, 1.0, 3, 3),
        (1.0, 1.0, 1, 1),
    ],
)
def test_workers_for_keeps_one_core_busy(wall_s: float, cpu_s: float, most: int, expected: int) -> None:
    assert workers_for(wall_s, cpu_s, most=most) == expected


def test_waiting_items_get_every_worker() -> None:
    """Items that only wait (a far server, an fsync) grow the pool to the limit."""
    names = workers_seen(lambda: time.sleep(0.02), items=40, workers=6)
    assert len(names) == 6


def test_cpu_bound_items_stay_on_the_first_workers() -> None:
    """Items that are all CPU (a server on loopback answers at once) keep FIRST_WORKERS:
    more threads would only take turns at the GIL."""
    names = workers_seen(lambda: busy(0.003), items=30, workers=8)
    assert len(names) == FIRST_WORKERS


def test_the_pool_is_never_larger_than_the_items() -> None:
    names = workers_seen(lambda: time.sleep(0.01), items=3, workers=8)
    assert len(names) <= 3


def test_an_error_while_sizing_still_ends_every_worker() -> None:
    """A failure among the first items: no worker is left behind, the error is raised."""
    calls: list[int] = []

    def work(n: int) -> None:
        calls.append(n)
        if n == 1:
            raise RuntimeError("boom")
        time.sleep(0.01)

    with pytest.raises(RuntimeError, match="boom"):
        fan_out(list(range(100)), work, workers=8, name="t-err")
    deadline = time.monotonic() + 2
    while any(t.name.startswith("t-err") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)  # each has counted itself out; the thread itself ends a moment later
    assert not any(t.name.startswith("t-err") for t in threading.enumerate())
    assert len(calls) < 100
    assert fanout.in_worker() is False
