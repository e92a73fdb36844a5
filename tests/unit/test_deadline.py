"""Attempt deadlines: on a helper thread for the main thread (and any thread not a fan-out
worker), in place with the watchdog on a fan-out worker; either way a stuck exchange ends at
its wall-clock deadline and the sockets it reads from are shut down. The deadline
bookkeeping is checked with a fake clock."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.unit.fakeclock import FakeClock
from vault_inject.client import deadline
from vault_inject.client.deadline import Attempt, Deadlines, Watch
from vault_inject.errors import SecretError, TransientError
from vault_inject.fanout import fan_out, in_worker


@pytest.fixture
def trickle() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair: reading ours blocks until theirs writes (a server that stalls)."""
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


class Conn:
    """What the wire's urllib3 connections give a watch: their socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock


def stalled_read(sock: socket.socket, threads: list[threading.Thread]) -> bytes:
    """An exchange that registers its connection and then blocks reading it."""
    threads.append(threading.current_thread())
    deadline.watched(Conn(sock))
    got = sock.recv(10)
    if not got:
        raise TransientError("connection refused or reset")  # what the wire says of a shut socket
    return got


def on_a_worker(fn: object) -> list[object]:
    """Run ``fn`` on a fan-out worker (two items: fan_out runs a single one in place);
    what each call returned or raised."""
    outcomes: list[object] = []

    def call(item: int) -> None:
        if item == 0:
            try:
                outcomes.append(fn())  # type: ignore[operator]
            except Exception as exc:
                outcomes.append(exc)

    fan_out([0, 1], call, workers=2)
    return outcomes


def test_only_fan_out_workers_are_workers() -> None:
    seen: list[bool] = []
    fan_out([1, 2, 3], lambda _: seen.append(in_worker()), workers=2)
    assert seen == [True, True, True]
    assert not in_worker()
    fan_out([1], lambda _: seen.append(in_worker()), workers=2)  # one item: run in place
    assert seen[-1] is False


def test_the_main_thread_gives_up_at_the_deadline_on_a_helper(
    trickle: tuple[socket.socket, socket.socket],
) -> None:
    """Called from the main thread, the stalled exchange runs on a helper; the caller gets
    "timed out" at the deadline, and the helper's blocked read returns (socket shut down)."""
    ours, _ = trickle
    threads: list[threading.Thread] = []
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        Attempt(lambda: stalled_read(ours, threads)).run(0.2)
    assert time.monotonic() - started < 2.0
    assert threads
    assert threads[0] is not threading.current_thread()
    assert ours.recv(10) == b""  # shut down: a read returns at once, empty


def test_a_worker_runs_the_attempt_in_place_and_the_watchdog_ends_it(
    trickle: tuple[socket.socket, socket.socket],
) -> None:
    """On a fan-out worker the exchange runs on the worker itself (no helper thread); the
    watchdog shuts its socket down at the deadline and the worker sees "timed out", not
    the connection error the shutdown caused."""
    ours, _ = trickle
    threads: list[threading.Thread] = []
    worker: list[threading.Thread] = []
    started = time.monotonic()

    def attempt() -> bytes:
        worker.append(threading.current_thread())
        return Attempt(lambda: stalled_read(ours, threads)).run(0.2)

    (outcome,) = on_a_worker(attempt)
    assert isinstance(outcome, TransientError)
    assert str(outcome) == "timed out"
    assert time.monotonic() - started < 2.0
    assert threads == worker  # in place


def test_an_attempt_in_place_that_answers_in_time_is_left_alone(
    trickle: tuple[socket.socket, socket.socket],
) -> None:
    """An answer before the deadline is returned; once the attempt ended, its deadline
    passing shuts nothing down (the connection is back in the pool by then)."""
    ours, theirs = trickle
    theirs.sendall(b"answer")
    (outcome,) = on_a_worker(lambda: Attempt(lambda: stalled_read(ours, [])).run(0.1))
    assert outcome == b"answer"
    time.sleep(0.3)  # past that deadline: the watchdog has had its turn
    theirs.sendall(b"more")
    assert ours.recv(10) == b"more"  # still open


def test_an_error_of_the_exchange_is_raised_as_it_is_in_place_and_on_a_helper() -> None:
    """An InjectError is the caller's; any other exception becomes a TransientError naming
    only its type (never its message, which may carry a URL)."""

    def refused() -> bytes:
        raise SecretError("the answer to 'secret/a' is larger than 16 MiB")

    def broken() -> bytes:
        raise KeyError("http://vault:8200/v1/secret?token=x")

    for run in (lambda fn: [_outcome(fn)], lambda fn: on_a_worker(lambda: Attempt(fn).run(5.0))):
        (error,) = run(refused)
        assert isinstance(error, SecretError)
        (other,) = run(broken)
        assert isinstance(other, TransientError)
        assert str(other) == "the request failed: KeyError"


def _outcome(fn: object) -> object:
    try:
        return Attempt(fn).run(5.0)  # type: ignore[arg-type]
    except Exception as exc:
        return exc


def test_attempts_reuse_idle_helper_threads() -> None:
    """A finished helper takes the next attempt (no thread started per request)."""
    ran_on: set[threading.Thread] = set()

    def work() -> None:
        ran_on.add(threading.current_thread())

    for _ in range(20):
        Attempt(work).run(5.0)
    assert len(ran_on) == 1


def test_abort_shuts_down_the_watched_socket(trickle: tuple[socket.socket, socket.socket]) -> None:
    """Giving up on an attempt shuts down the sockets it registered: a blocked read returns."""
    ours, _ = trickle
    watch = Watch()
    watch.add(Conn(ours))
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(ours.recv(10)), daemon=True)
    reader.start()
    watch.abort()
    reader.join(timeout=2)
    assert got == [b""]


def test_a_finished_watch_is_not_aborted(trickle: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = trickle
    watch = Watch()
    watch.add(Conn(ours))
    watch.finish()
    watch.abort()
    assert not watch.aborted
    theirs.sendall(b"x")
    assert ours.recv(1) == b"x"


def test_a_connection_registered_after_the_abort_is_shut_at_once(
    trickle: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = trickle
    watch = Watch()
    watch.abort()
    watch.add(Conn(ours))
    assert ours.recv(10) == b""


# --- the deadline bookkeeping, with a fake clock ----------------------------------------------


def test_deadlines_are_due_in_order_and_finished_ones_are_forgotten() -> None:
    clock = FakeClock()
    deadlines = Deadlines()
    early, late, done = Watch(), Watch(), Watch()
    deadlines.add(late, clock() + 30)
    deadlines.add(early, clock() + 5)
    deadlines.add(done, clock() + 1)
    done.finish()
    assert deadlines.next_deadline() == clock() + 5  # the finished one does not count
    assert deadlines.due(clock()) == []
    clock.sleep(5)
    assert deadlines.due(clock()) == [early]
    assert deadlines.next_deadline() == clock() + 25
    late.finish()
    assert deadlines.next_deadline() is None
    assert len(deadlines) == 0


def test_attempts_that_end_in_time_do_not_pile_up() -> None:
    """Every attempt adds its deadline; those that finished long before it are dropped as
    new ones come (a loop polling 50 paths a second holds a few entries, not thousands)."""
    clock = FakeClock()
    deadlines = Deadlines()
    for _ in range(10_000):
        watch = Watch()
        deadlines.add(watch, clock() + 30)
        watch.finish()
        clock.sleep(0.001)
    assert len(deadlines) <= 1
