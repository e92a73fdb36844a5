"""One HTTP attempt within a wall-clock deadline, and the sockets to shut down at it.

A deadline here is wall-clock time for the whole attempt, not a socket timeout: a server
that trickles a byte every 0.5 s never trips a read timeout. Every connection an attempt
reads from registers with the attempt's ``Watch`` (``watched``, called by the wire's
urllib3 connection subclasses); giving up on the attempt shuts those sockets down, so the
read blocked on one returns at once.

Where the attempt runs depends on who waits for it:

* the main thread (where Python runs signal handlers: a PID 1 must stay responsive) and
  any thread that is not a fan-out worker: on a daemon helper thread; the caller waits
  for it until the deadline and gives up then, whatever the helper is stuck in (a DNS
  lookup, a connect, a trickled status line, headers or body);
* a fan-out worker (``fanout.in_worker``: its caller already waits for it, and a render
  or a poll fans out to up to READ_WORKERS of them): in place, on the worker itself, and
  one watchdog thread for the whole process shuts the attempt's sockets down at its
  deadline. Handing every read to a helper and back would cost two thread switches per
  read, a large share of a read's CPU. What the watchdog
  cannot end is a DNS lookup (no socket yet): a worker waits out the resolver's own
  timeout there, and its caller with it.

A daemon thread never holds inject's exit.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .. import fanout
from ..errors import InjectError, TransientError

T = TypeVar("T")


class Connection(Protocol):
    """What a watch needs of a connection: its socket (None before connecting)."""

    sock: socket.socket | None


class Watch:
    """The connections one attempt reads from, so giving up on it can shut them down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: list[Connection] = []
        self._aborted = False
        self.finished = False  # the attempt ended: the watchdog forgets it

    @property
    def aborted(self) -> bool:
        """True once the attempt was given up on."""
        return self._aborted

    def add(self, conn: Connection) -> None:
        """Remember ``conn``; shut it down at once if the attempt was already given up."""
        with self._lock:
            self._conns.append(conn)
            aborted = self._aborted
        if aborted:
            _shutdown(conn)

    def abort(self) -> None:
        """Shut down every socket of the attempt (unless it ended): a read blocked on one
        returns now."""
        with self._lock:
            if self.finished:
                return
            self._aborted = True
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)

    def finish(self) -> None:
        """The attempt ended: nothing of it is shut down from now on."""
        with self._lock:
            self.finished = True


class Attempt(Generic[T]):
    """One exchange (``work``) that the caller gets the answer of, or TransientError("timed
    out") at the deadline; an InjectError of ``work`` is raised as it is, any other error
    as a TransientError naming its type."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._answer: T | None = None
        self._error: InjectError | None = None
        self._watch = Watch()

    def run(self, timeout_s: float) -> T:
        """Run the exchange within ``timeout_s`` seconds of wall-clock time."""
        if fanout.in_worker():
            self._in_place(timeout_s)
        else:
            self._on_helper(timeout_s)
        if self._error is not None:
            raise self._error
        return self._answer  # type: ignore[return-value] # set whenever no error was

    def _on_helper(self, timeout_s: float) -> None:
        done = threading.Event()
        _HELPERS.run(self._main, done)
        if not done.wait(timeout_s):
            self._watch.abort()
            raise TransientError("timed out")

    def _in_place(self, timeout_s: float) -> None:
        _WATCHDOG.add(self._watch, time.monotonic() + timeout_s)
        self._main()
        if self._watch.aborted and self._error is not None:
            self._error = TransientError("timed out")  # not the read cut short by the shutdown

    def _main(self) -> None:
        _CURRENT.watch = self._watch
        try:
            self._answer = self._work()
        except InjectError as exc:
            self._error = exc
        except Exception as exc:  # never let the helper die silently
            self._error = TransientError(f"the request failed: {type(exc).__name__}")
        finally:
            _CURRENT.watch = None
            self._watch.finish()


class _Helpers:
    """The daemon threads attempts run on: an idle one is reused, a new one started when all
    are busy (one per attempt in flight): starting a thread per request would cost as much
    as a good part of requests' own work per request. A helper whose attempt was given up on (a hung DNS
    lookup, a socket the shutdown did not wake) is busy until that ends, then idle again."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[tuple[Callable[[], None], threading.Event]]] = []
        self._lock = threading.Lock()

    def run(self, job: Callable[[], None], done: threading.Event) -> None:
        """Run ``job`` on an idle helper (or a new one) and set ``done`` once that helper is
        idle again (so the next attempt finds it); return at once."""
        with self._lock:
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(jobs,), name="inject-request-idle", daemon=True
            ).start()
        jobs.put((job, done))

    def _serve(self, jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]]) -> None:
        me = threading.current_thread()
        while True:
            job, done = jobs.get()
            me.name = "inject-request"  # while an attempt runs (what a thread dump shows)
            try:
                job()  # Attempt._main: never raises
            finally:
                me.name = "inject-request-idle"
                with self._lock:
                    self._idle.append(jobs)
                done.set()


class Deadlines:
    """The deadlines of the attempts running in place, earliest first. Pure bookkeeping
    (the clock is given); ``_Watchdog`` is the thread that acts on it."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()

    def add(self, watch: Watch, deadline: float) -> None:
        """Watch ``watch`` until ``deadline`` (or until it finishes)."""
        self._forget_finished()
        heapq.heappush(self._heap, (deadline, next(self._order), watch))

    def due(self, now: float) -> list[Watch]:
        """The unfinished watches whose deadline has come, taken off."""
        expired = []
        while self._heap and self._heap[0][0] <= now:
            watch = heapq.heappop(self._heap)[2]
            if not watch.finished:
                expired.append(watch)
        return expired

    def next_deadline(self) -> float | None:
        """When the earliest unfinished watch is due; None when there is none."""
        self._forget_finished()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def _forget_finished(self) -> None:
        # attempts end long before their deadline: the earliest ones are finished ones
        while self._heap and self._heap[0][2].finished:
            heapq.heappop(self._heap)


class _Watchdog:
    """One daemon thread that shuts down the sockets of in-place attempts at their deadline.
    It sleeps until the earliest deadline and is woken only by an earlier one (an attempt
    with a shorter timeout), so an attempt that ends in time costs it nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines = Deadlines()
        self._cond = threading.Condition()
        self._wakes_at: float | None = None  # what the thread sleeps until (None: no end)
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch, deadline: float) -> None:
        """Give up on ``watch`` at ``deadline`` unless it finished by then."""
        with self._cond:
            self._deadlines.add(watch, deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inject-deadlines", daemon=True)
                self._thread.start()
            elif self._wakes_at is None or deadline < self._wakes_at:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                expired = self._deadlines.due(self._clock())
                if not expired:
                    self._wakes_at = self._deadlines.next_deadline()
                    timeout = None if self._wakes_at is None else max(0.0, self._wakes_at - self._clock())
                    self._cond.wait(timeout)
                    continue
            for watch in expired:  # outside the lock: a shutdown may take a moment
                watch.abort()


_HELPERS = _Helpers()
_WATCHDOG = _Watchdog()


class _Current(threading.local):
    watch: Watch | None = None


_CURRENT = _Current()  # the attempt running on this thread


def watched(conn: Connection) -> None:
    """Register ``conn`` with the attempt running on this thread (if any)."""
    watch = _CURRENT.watch
    if watch is not None:
        watch.add(conn)


def _shutdown(conn: Connection) -> None:
    sock = conn.sock
    if sock is not None:
        # socket.socket's own shutdown, also for an SSLSocket: its override would reset the
        # TLS object under the helper thread that is reading from it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
