"""The child's state machine: start, forward, stop with a deadline, restart, exit code.

A stop (a forwarded TERM/INT/QUIT, or a restart) is about the child's whole process
group, and about the descendants that left the group (psutil finds them): all get the
signal, and those still running ``kill_timeout_s`` later get SIGKILL. A restart starts
the new child only once nothing of the old one is left; inject exits only once nothing of
its child is left. A child that exits on its own has its leftovers stopped the same way.

No I/O of its own: processes come from a ``ProcessPort`` and time from a clock, so the
whole machine runs under a fake clock in the unit tests.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import EXIT_SIGNAL_BASE, InjectError
from ..identity import Identity
from .actions import Action
from .signals import STOP_SIGNALS

log = logging.getLogger(__name__)

DRAIN_CHECK_S = 0.05  # how often leftovers of a stopped child are looked for
FINAL_WAIT_S = 5.0  # after SIGKILL at inject's exit


class ProcessPort(Protocol):
    """What the controller needs from the operating system (``child.Processes``)."""

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], identity: Identity) -> int: ...

    def signal_group(self, pgid: int, signum: int) -> None: ...

    def signal_pid(self, pid: int, signum: int) -> None: ...

    def descendants(self, pid: int) -> frozenset[int]: ...

    def alive(self, pgid: int, pids: frozenset[int]) -> bool: ...

    def exited(self, pid: int) -> int | None: ...


@dataclass
class _Stopping:
    """A child (or what is left of it) on its way out."""

    pgid: int
    outside: frozenset[int]  # descendants that left its process group
    kill_at: float
    killed: bool = False


class ChildController:
    """Owns the running child: one at a time, never an orphan left behind."""

    def __init__(
        self,
        procs: ProcessPort,
        *,
        argv: Sequence[str],
        identity: Identity,
        env: Callable[[], Mapping[str, str]],
        kill_signal: int = signal.SIGTERM,
        kill_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._procs = procs
        self._argv = list(argv)
        self._identity = identity
        self._env = env
        self.kill_signal = kill_signal
        self.kill_timeout_s = kill_timeout_s
        self._clock = clock
        self._sleep = sleep
        self.pid = 0
        self.exit_code: int | None = None
        self.stop_signal: int | None = None  # set once inject itself is stopping
        self._restart = False
        self._stopping: _Stopping | None = None
        self._last_code = 0
        self.restarts = 0  # for the metrics: restarts begun, signals sent on a change
        self.reloads: Counter[int] = Counter()

    # --- state --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a restart or stop is under way (changes wait until it is over)."""
        return self._stopping is not None or self._restart or self.stop_signal is not None

    def next_at(self) -> float | None:
        """When the controller next needs a look (kill deadline, leftovers check)."""
        if self._stopping is None:
            return None
        if self.pid:
            return self._stopping.kill_at if not self._stopping.killed else None
        return self._clock() + DRAIN_CHECK_S

    # --- actions ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the command; a failure to start becomes inject's exit code."""
        try:
            self.pid = self._procs.spawn(self._argv, self._env(), self._identity)
        except InjectError as exc:
            log.error("%s", exc)
            self.exit_code = exc.exit_code
            return
        log.info("started %s (pid %d)", self._argv[0], self.pid)

    def forward(self, signum: int) -> None:
        """A signal inject received: to the child's group; TERM/INT/QUIT also stop inject."""
        stop = signum in STOP_SIGNALS
        if stop and self.stop_signal is None:
            self.stop_signal = signum
            self._restart = False
        if self.pid:
            log.debug("forwarding %s to pid %d", signal.Signals(signum).name, self.pid)
            if stop:
                self._begin_stop(signum)
            else:
                self._procs.signal_group(self.pid, signum)
        elif stop and self._stopping is None and self.exit_code is None:
            self.exit_code = EXIT_SIGNAL_BASE + signum  # nothing running (e.g. between restarts)

    def act(self, action: Action, causes: str) -> None:
        """Tell the child about a change: restart it, or send each signal of ``action``."""
        if action.restart:
            self.restart(causes + (f"; {action.note}" if action.note else ""))
            return
        for signum in action.signals:
            if self.pid and self.stop_signal is None:
                log.info("%s; sending %s to child pid %d", causes, signal.Signals(signum).name, self.pid)
                self.reload(signum)

    def reload(self, signum: int) -> None:
        """Send the reload signal to the child's group."""
        if self.pid:
            self._procs.signal_group(self.pid, signum)
            self.reloads[signum] += 1

    def restart(self, reason: str) -> None:
        """Stop the child (kill signal, then SIGKILL) and start it again once it is all gone."""
        if self.stop_signal is not None:
            return
        if not self.pid:
            if self._stopping is None:
                self.start()
            return
        log.info("%s; restarting child pid %d", reason, self.pid)
        self.restarts += 1
        self._restart = True
        self._begin_stop(self.kill_signal)

    def _begin_stop(self, signum: int) -> None:
        outside = self._procs.descendants(self.pid)
        self._procs.signal_group(self.pid, signum)
        for pid in outside:
            self._procs.signal_pid(pid, signum)
        if self._stopping is None:
            self._stopping = _Stopping(self.pid, outside, self._clock() + self.kill_timeout_s)
        else:
            self._stopping.outside |= outside

    # --- time passing -------------------------------------------------------------------

    def poll(self) -> None:
        """Look at the child after a SIGCHLD or a deadline: reap, SIGKILL, restart or finish."""
        if self.pid:
            code = self._procs.exited(self.pid)
            if code is not None:
                self._main_exited(code)
        stopping = self._stopping
        if stopping is None:
            return
        if not self.pid and not self._procs.alive(stopping.pgid, stopping.outside):
            self._stopping = None
            self._finish()
        elif self._clock() >= stopping.kill_at and not stopping.killed:
            self._kill(stopping)

    def _main_exited(self, code: int) -> None:
        old_pid, self.pid, self._last_code = self.pid, 0, code
        if self._restart and self.stop_signal is None:
            log.debug("child pid %d stopped (code %d) for restart", old_pid, code)
        else:
            log.info("child pid %d exited with code %d", old_pid, code)
        if self._stopping is None:  # exited on its own: its leftovers get the kill signal too
            self._stopping = _Stopping(old_pid, frozenset(), self._clock() + self.kill_timeout_s)
            self._procs.signal_group(old_pid, self.kill_signal)

    def _kill(self, stopping: _Stopping) -> None:
        what = f"child pid {self.pid}" if self.pid else f"what is left of child {stopping.pgid}"
        log.warning("%s still running after %.3gs; sending SIGKILL", what, self.kill_timeout_s)
        self._procs.signal_group(stopping.pgid, signal.SIGKILL)
        for pid in stopping.outside:
            self._procs.signal_pid(pid, signal.SIGKILL)
        stopping.killed = True

    def _finish(self) -> None:
        if self._restart and self.stop_signal is None:
            self._restart = False
            self.start()
        else:
            self._restart = False
            self.exit_code = self._last_code

    # --- inject exiting -----------------------------------------------------------------

    def stop_now(self) -> None:
        """inject is exiting: stop whatever of the child is left, waiting at most the kill
        timeout (then SIGKILL and a short wait)."""
        if self.pid and self.stop_signal is None:
            self.stop_signal = self.kill_signal
            self._begin_stop(self.kill_signal)
        deadline = self._clock() + self.kill_timeout_s + FINAL_WAIT_S
        while (self.pid or self._stopping is not None) and self._clock() < deadline:
            self.poll()
            if self.pid or self._stopping is not None:
                self._sleep(DRAIN_CHECK_S)
