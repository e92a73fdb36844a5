"""The loop that owns the running child: one queue of events, one decision per event.

Events come from signal handlers (every forwardable signal, and SIGCHLD) and from
timers. A forwarded signal goes to the child's process group; TERM/INT/QUIT also
start the stop clock (kill timeout, then SIGKILL). SIGCHLD runs the one reaper loop,
which reaps every zombie and records the main child's status. The loop returns the
exit code inject should exit with: the child's own, or 128+N for a death by signal N.
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from . import child
from .child import FORWARDED_SIGNALS, STOP_SIGNALS, Identity

log = logging.getLogger(__name__)

IDLE_WAKE_S = 1.0  # safety net: reap even if a SIGCHLD was coalesced


@dataclass(frozen=True)
class Signal:
    """A signal inject received."""

    signum: int


Event = Signal


class Supervisor:
    """Starts the child, forwards signals, reaps, and stops the child gracefully."""

    def __init__(
        self,
        *,
        kill_signal: int = signal.SIGTERM,
        kill_timeout_s: float = 10.0,
        identity: Identity | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._kill_signal = kill_signal
        self._kill_timeout_s = kill_timeout_s
        self._identity = identity or Identity()
        self._clock = clock
        self._pid = 0
        self._kill_at: float | None = None

    def install_handlers(self) -> None:
        """Handle every forwardable signal and SIGCHLD by queueing an event (reentrant-safe)."""
        for signum in (*FORWARDED_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        for signum in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._events.put(Signal(signum))  # SimpleQueue.put is safe in a signal handler

    def run(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Start ``argv`` and supervise it until it exits; return inject's exit code."""
        self.install_handlers()
        child.become_subreaper()
        self._pid = child.spawn(argv, env, self._identity)
        log.info("started %s (pid %d)", argv[0], self._pid)
        while True:
            code = child.reap(self._pid)
            if code is not None:
                log.info("child pid %d exited with code %d", self._pid, code)
                return code
            self._handle(self._next_event())

    def _next_event(self) -> Event | None:
        timeout = IDLE_WAKE_S
        if self._kill_at is not None:
            timeout = max(0.0, min(timeout, self._kill_at - self._clock()))
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, event: Event | None) -> None:
        if self._kill_at is not None and self._clock() >= self._kill_at:
            log.warning(
                "child pid %d still running after %.3gs; sending SIGKILL",
                self._pid,
                self._kill_timeout_s,
            )
            child.signal_group(self._pid, signal.SIGKILL)
            self._kill_at = None
        if isinstance(event, Signal) and event.signum != signal.SIGCHLD:
            self._forward(event.signum)

    def _forward(self, signum: int) -> None:
        name = signal.Signals(signum).name
        log.debug("forwarding %s to pid %d", name, self._pid)
        child.signal_group(self._pid, signum)
        if signum in STOP_SIGNALS and self._kill_at is None:
            self._kill_at = self._clock() + self._kill_timeout_s
