"""Signals from the first instant.

``install()`` is the first thing inject does (before click, config, login or the first
render): every forwardable signal and SIGCHLD gets a real handler, since the kernel
drops unhandled signals sent to a PID 1.

Until the supervisor takes over (``hand_over``), inject has no child to forward to, so:

* TERM/INT/QUIT end inject at once with 128+N (143/130/131): whatever it was waiting for
  (a server being retried, a slow login, a template command) is abandoned, and the
  commands it started are killed. Inside ``deferred()`` (an all-or-nothing file commit)
  the exit waits for the block to end, so no commit is left half-done.
* other signals have nobody to go to and are dropped (logged at debug).

After ``hand_over`` every signal becomes a ``Signal`` event on the supervisor's queue
(``SimpleQueue.put`` is reentrant, so it is safe from a handler).

Imports nothing heavy: it runs before the rest of inject is loaded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

EXIT_SIGNAL_BASE = 128

# Signals forwarded to the child. TTIN/TTOU are ignored by inject (as tini does).
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
    signal.SIGTSTP,
    signal.SIGALRM,
    signal.SIGPWR,
)
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


@dataclass(frozen=True)
class Signal:
    """A signal inject received."""

    signum: int


def startup_action(signum: int, *, in_critical_section: bool) -> str:
    """What a signal means before the supervisor runs: ``exit``, ``defer`` (exit after the
    critical section) or ``drop``. Pure."""
    if signum not in STOP_SIGNALS:
        return "drop"
    return "defer" if in_critical_section else "exit"


class Inbox:
    """Where signals go: straight to an exit during startup, onto a queue afterwards."""

    def __init__(self, exit_now: Callable[[int], None] | None = None) -> None:
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.running = False
        self._critical = 0
        self._pending_stop = 0
        self._exit_now = exit_now or _exit_now
        self._cleanups: list[Callable[[], None]] = []

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        """The signal handler."""
        if self.running:
            self.events.put(Signal(signum))
            return
        action = startup_action(signum, in_critical_section=self._critical > 0)
        if action == "exit":
            self._stop(signum)
        elif action == "defer":
            self._pending_stop = self._pending_stop or signum

    def hand_over(self) -> None:
        """From now on signals are events for the supervisor's loop."""
        self.running = True

    def on_exit(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` (best effort) if a signal ends inject during startup."""
        self._cleanups.append(cleanup)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a startup stop must not interrupt; the stop takes effect when it ends."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._pending_stop and not self.running:
                self._stop(self._pending_stop)

    def _stop(self, signum: int) -> None:
        for cleanup in self._cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        self._exit_now(signum)


def _exit_now(signum: int) -> None:
    name = signal.Signals(signum).name
    with contextlib.suppress(OSError):
        sys.stderr.flush()
        os.write(2, f"inject: received {name} during startup; exiting\n".encode())
    os._exit(EXIT_SIGNAL_BASE + signum)


INBOX = Inbox()


def install(inbox: Inbox = INBOX) -> Inbox:
    """Handle every forwardable signal and SIGCHLD from now on (idempotent)."""
    for signum in (*FORWARDED_SIGNALS, signal.SIGCHLD):
        signal.signal(signum, inbox.handle)
    for signum in (signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    return inbox
