"""The loop that keeps secrets fresh and owns the running child.

One queue of events, one decision per event; the loop never waits on anything but the
queue. Everything slow runs on a worker and comes back as a ``WorkDone``:

* a signal goes to the child controller (forward; TERM/INT/QUIT stop inject once the child
  is all gone); SIGCHLD makes the controller reap;
* ``poll``: every KV secret in use is read (one request per distinct path); new versions mark
  the outputs that used them, debounced by ``wait`` min/max;
* ``life``: lease and token renewals, re-logins (``Lifecycle``); ``refresh``: re-reads of
  leases and certificates that cannot be renewed further;
* ``apply``: re-render the marked outputs, write (all or none), ``check`` and roll back,
  template commands (``Applier``); then the loop restarts, signals or leaves the child
  (the strongest action of what changed, ``actions``), after a random ``splay`` if set;
* ``reload``: a template source or the config file changed; ``reconcile``: sources edited
  before the file watcher was up.

``Lifecycle`` is used by one thread at a time: by its worker while a ``life`` job runs,
otherwise by the loop (what the loop wants meanwhile waits in ``_life_later``).
Without a command (``inject watch``) the same loop runs with no child. After every turn the
loop hands a frozen snapshot of its state to ``publish`` (the health and metrics endpoints).
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..config import Config
from ..errors import InjectError
from ..model import Request, Secret
from ..observe import Snapshot
from ..process import STOP_SIGNALS, ChildController, Signal, actions
from ..render import Engine, Job
from .apply import Applied, Applier, ApplyRequest
from .debounce import Debouncer
from .lifecycle import Lifecycle
from .pending import Pending
from .polling import PollTimer
from .renewals import Renewals
from .sources import Event, EventQueue, FilesChanged, PollDone, ReadFn, WorkDone, Workers, read_all
from .splay import Splay
from .stale import Recovered, StaleStart
from .stats import Stats

log = logging.getLogger(__name__)

IDLE_WAKE_S = 1.0  # safety net: reap even if a SIGCHLD was coalesced
RECONCILE_AFTER_S = (0.0, 1.0)  # compare template sources once the watcher is up
SETTLE_S = 2.0  # at exit, wait this long for a file commit in progress


@dataclass
class Collaborators:
    """What the loop works with, built by ``app`` (fakes in the unit tests)."""

    events: EventQueue
    workers: Workers
    life: Lifecycle
    applier: Applier
    poll_read: ReadFn
    refresh_read: ReadFn
    reap: Callable[[], None]
    child: ChildController | None = None
    rebuild_job: Callable[[], Job] | None = None
    reconcile: Callable[[], frozenset[str]] | None = None
    auth_file: str = ""
    base_env: Mapping[str, str] = field(default_factory=dict)
    publish: Callable[[Snapshot], None] | None = None  # health and metrics (``observe``)
    persist: Persist | None = None  # the encrypted state (``[state]``)
    notify: Notify = field(default_factory=lambda: Silent())  # systemd's NOTIFY_SOCKET (``observe``)
    stale: StaleStart | None = None  # started from the state's values while the server was down


class Persist(Protocol):
    """Keeps the state file up to date (``cli.keeper``)."""

    def save(self, secrets: Mapping[Request, Secret], token: str) -> None: ...
    def finish(self, *, revoked: bool) -> None: ...


class Notify(Protocol):
    """Tells systemd how the service is doing (``observe.Notifier``)."""

    def ready(self, status: str = "") -> None: ...
    def reloading(self, status: str = "") -> None: ...
    def stopping(self, status: str = "") -> None: ...
    def beat(self, now: float) -> None: ...
    def next_at(self) -> float | None: ...


class Silent:
    """Not under systemd: nothing to tell."""

    def ready(self, status: str = "") -> None:
        """Nothing."""

    def reloading(self, status: str = "") -> None:
        """Nothing."""

    def stopping(self, status: str = "") -> None:
        """Nothing."""

    def beat(self, now: float) -> None:
        """Nothing."""

    def next_at(self) -> float | None:
        """Never."""
        return None


def status_line(engine: Engine, child: ChildController | None) -> str:
    """One line for ``systemctl status``: no value, only counts and the child's pid."""
    files = f"{len(engine.all_outputs())} output(s) rendered"
    return f"{files}; child pid {child.pid} running" if child is not None and child.pid else files


class Supervisor:
    """Keeps the rendered outputs fresh and, with a command, supervises the child."""

    def __init__(
        self,
        *,
        config: Config,
        engine: Engine,
        parts: Collaborators,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.engine = engine
        self.p = parts
        self._clock = clock
        self._polls = PollTimer(config.poll_interval_s, clock=clock)
        self._pending = Pending(Debouncer(config.wait_min_s, config.wait_max_s), clock=clock)
        self._renewals = Renewals(parts.life, parts.workers, parts.refresh_read)
        self._splay = Splay(config.splay_s, clock=clock, rand=rand)
        self._stats = Stats(clock=clock)
        self._new_job: Job | None = None
        self._reload_causes = "templates changed"
        self._reload_again = False
        self._reload_error = ""  # the last rebuild's error, logged once
        self._reconcile_at = [clock() + d for d in RECONCILE_AFTER_S] if parts.reconcile else []
        self._exit: int | None = None
        self._renewals.track(engine.secrets)  # after a stale start: with the time each lease has left
        if parts.stale is not None and parts.stale.active:
            self._stats.stale = (parts.stale.stale.since, parts.stale.stale.saved_at)

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the child is gone (or, with no command, until TERM/INT); the exit code."""
        if self.p.child is not None:
            self.p.child.start()
        self.p.notify.ready(status_line(self.engine, self.p.child))  # rendered; the child started
        while True:
            self._after_event()
            if self._exit is not None:
                return self._exit
            self._dispatch(self._next_event())

    def _after_event(self) -> None:
        child = self.p.child
        if child is None:
            self.p.reap()
        else:
            child.poll()
            if child.exit_code is not None:
                self._exit = child.exit_code
                return
        if not self._stopping:
            self._run_timers()
        self.p.notify.beat(self._clock())  # from the loop itself: a stuck loop stops the beat
        self._publish()
        self._persist()

    @property
    def stale(self) -> bool:
        """True while running on the state's last-known-good values (the server has not
        answered since the start)."""
        return self.p.stale is not None and self.p.stale.active

    def _persist(self) -> None:
        if self.stale:  # nothing new to save, and the state's age must not be renewed
            return
        if self.p.persist is not None and not self._renewals.busy:  # the token is the worker's
            self.p.persist.save(self.engine.secrets, self.p.life.token)

    def _publish(self) -> None:
        if self.p.publish is not None:  # the lifecycle's expiries only while no worker has it
            expiries = None if self._renewals.busy else self.p.life.expiries()
            self.p.publish(self._stats.snapshot(self.p.child, self.config.poll_interval_s, expiries))

    def _next_event(self) -> Event | None:
        now = self._clock()
        try:
            event: Event = self.p.events.get(timeout=max(0.0, min(self._wake_times(now)) - now))
        except queue.Empty:
            return None
        return event

    def _wake_times(self, now: float) -> list[float]:
        """Every timer the loop must wake for; while stopping, only the child's."""
        child_at = self.p.child.next_at() if self.p.child is not None else None
        times = [now + IDLE_WAKE_S] + [t for t in (child_at, self.p.notify.next_at()) if t is not None]
        if self._stopping:
            return times
        due = [self._renewals.next_at(), self._pending.retry_at(), self._splay.next_at()]
        if not self._apply_blocked:
            due.append(self._pending.next_at())
        return times + [self._polls.next_at, *self._reconcile_at] + [t for t in due if t is not None]

    def _dispatch(self, event: Event | None) -> None:
        if isinstance(event, Signal):
            self._on_signal(event.signum)
        elif isinstance(event, FilesChanged):
            self._on_files(event.paths)
        elif isinstance(event, WorkDone):
            self._on_done(event)

    def _on_done(self, done: WorkDone) -> None:
        value = done.value
        if isinstance(done.error, InjectError):
            value = done.error
        elif done.error is not None:  # a bug in a job: say so, carry on
            log.error("internal error in %s: %s", done.name, type(done.error).__name__)
        handlers: dict[str, Callable[[object], None]] = {
            "poll": self._on_poll,
            "refresh": self._on_refresh,
            "life": self._renewals.on_life,
            "apply": self._on_applied,
            "reload": self._on_reload,
            "reconcile": self._on_reconciled,
        }
        handlers[done.name](value)

    @property
    def _stopping(self) -> bool:
        return self.p.child is not None and self.p.child.stop_signal is not None

    def _run_timers(self) -> None:
        now = self._clock()
        if self._polls.due() and not self.p.workers.busy("poll"):
            self._start_poll()
        if not self.stale:  # no token to renew with yet; the reconnect takes what is alive
            self._renewals.run_due(now)
        while self._reconcile_at and self._reconcile_at[0] <= now and self.p.reconcile:
            self._reconcile_at.pop(0)
            self.p.workers.start("reconcile", self.p.reconcile)
        self._maybe_apply()
        self._act_due()

    # --- signals ------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # the controller reaps after every event
        if signum in STOP_SIGNALS:
            self.p.notify.stopping(f"stopping on {signal.Signals(signum).name}")
        if self.p.child is not None:
            self.p.child.forward(signum)
        elif signum in STOP_SIGNALS:  # sidecar: TERM/INT/QUIT end the watch, HUP polls now
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._exit = 0
        elif signum == signal.SIGHUP:
            self._polls.now()

    # --- polls and re-reads -------------------------------------------------------------

    def _start_poll(self) -> None:
        if self.p.stale is not None and self.p.stale.active:
            self._polls.started()
            self.p.workers.start("poll", self.p.stale.attempt(list(self.engine.secrets)))
            return
        keys = self.engine.polled_keys()
        if not keys:
            self._polls.skipped()
            return
        self._polls.started()
        self.p.workers.start("poll", lambda: read_all(self.p.poll_read, keys))

    def _on_poll(self, value: object) -> None:
        if isinstance(value, Recovered):
            self._recovered(value)
            return
        done = value if isinstance(value, PollDone) else PollDone()
        self._polls.finished(done.outage, quiet=self.stale)
        self._stats.polled(done)
        self._take_in(done)

    def _recovered(self, value: Recovered) -> None:
        """The server answered after a stale start: its token from now on, and what it said
        taken in like a poll (a change re-renders and restarts or signals the child)."""
        if self.p.stale is not None:
            self.p.stale.ended(value)
        self._stats.stale = None
        self._renewals.adopt(value.grant, value.token)
        self._polls.finished(value.done.outage, quiet=True)
        self._stats.polled(value.done)
        self._take_in(value.done)

    def _on_refresh(self, value: object) -> None:
        done = value if isinstance(value, PollDone) else PollDone()
        self._renewals.on_refresh(done)
        self._take_in(done)

    def _take_in(self, done: PollDone) -> None:
        self._stats.read(done)
        if not self._renewals.token_rejected(done):
            self._polls.report(done.failed, done.fresh)
        self._renewals.track(done.fresh)
        changed = self.engine.absorb(done.fresh)
        if changed:
            self._pending.mark(self.engine.outputs_using(changed), changed.values())

    # --- file changes -------------------------------------------------------------------

    def _on_files(self, paths: frozenset[str]) -> None:
        auth_file = {self.p.auth_file} if self.p.auth_file else set()
        if paths & auth_file:
            self._renewals.relogin(f"{self.p.auth_file} changed")
        others = paths - auth_file
        if others and self.p.rebuild_job is not None:
            self._reload_causes = f"{', '.join(sorted(others))} changed"
            # A rebuild still running may have read the files before this edit: once it
            # reports back, rebuild again (an edit is never lost; same contents are dropped).
            self._reload_again = not self.p.workers.start("reload", self.p.rebuild_job)

    def _on_reconciled(self, value: object) -> None:
        if isinstance(value, frozenset) and value:
            self._on_files(value)

    def _on_reload(self, value: object) -> None:
        if self._reload_again and self.p.rebuild_job is not None:
            self._reload_again = False
            self.p.workers.start("reload", self.p.rebuild_job)
        if isinstance(value, InjectError):
            if str(value) != self._reload_error:  # once per failure, not per rebuild
                log.error("%s (keeping the previous templates)", value)
            self._reload_error = str(value)
        elif isinstance(value, Job):
            self._reload_error = ""
            current = self._new_job or self.engine.job
            if value.sources == current.sources:  # one edit seen twice (watcher and reconcile)
                log.debug("%s; same contents as the templates in use", self._reload_causes)
                return
            self._new_job = value

    def _swap_job(self) -> None:
        job, self._new_job = self._new_job, None
        if job is None:
            return
        removed = self.engine.all_outputs()
        self.engine.job = job
        self.engine.forget_errors()  # an edited template that still fails says so again
        self.config = job.config
        self._pending.debounce = Debouncer(self.config.wait_min_s, self.config.wait_max_s)
        self._splay.splay_s = self.config.splay_s
        self.engine.forget(removed - self.engine.all_outputs())
        self._pending.mark(self.engine.all_outputs(), [self._reload_causes])

    # --- acting on changes --------------------------------------------------------------

    @property
    def _apply_blocked(self) -> bool:
        """A change is being applied, or the child is being restarted: the next one waits
        (and is looked at again when that job or restart reports back)."""
        return self.p.workers.busy("apply") or (self.p.child is not None and self.p.child.busy)

    def _maybe_apply(self) -> None:
        if self._apply_blocked:
            return
        self._swap_job()
        due = self._pending.take_due()
        if due is None:
            return
        outputs, causes = due
        known, engine = self.engine.snapshot(), self.engine
        request = ApplyRequest(
            outputs=outputs,
            causes=causes,
            job=engine.job,
            rerender=lambda: engine.rerender(outputs, known),
            env={**self.p.base_env, **engine.env},
        )
        if self.p.workers.start("apply", lambda: self.p.applier.apply(request)):
            self.p.notify.reloading(f"re-rendering {len(outputs)} output(s)")

    def _on_applied(self, value: object) -> None:
        self.p.notify.ready(status_line(self.engine, self.p.child))  # whatever the outcome
        if not isinstance(value, Applied):
            return
        request = value.request
        self._stats.applied(
            status=value.status,
            failed=value.outcome.failed,
            rendered=value.rendered.deps,
            outputs=request.outputs,
        )
        if value.status in ("unchanged", "failed"):
            self.engine.accept(value.rendered)
            if value.status == "unchanged":  # a failure was logged once, as the error it is
                log.info("%s; output unchanged", request.causes)
        elif value.status == "write_failed":
            self._pending.write_failed(request.outputs, request.causes, value.error)
        elif value.status == "written":
            self._pending.written()
            self.engine.accept(value.rendered)
            self._tell_child(value)

    def _tell_child(self, value: Applied) -> None:
        """The strongest action of the outputs that changed, after the splay delay (if any)."""
        outcome, causes = value.outcome, value.request.causes
        action = actions.decide(self.config, files=outcome.files, env_changed=outcome.env_changed)
        if self.p.child is None or action.nothing or not self.p.child.pid:
            log.info("%s; %d file(s) updated", causes, len(outcome.files))
            return
        self._splay.hold(action, causes)
        self._act_due()

    def _act_due(self) -> None:
        due = self._splay.take_due()
        if due is not None and self.p.child is not None:
            self.p.child.act(*due)


def stop_everything(parts: Collaborators, *, revoke: bool) -> None:
    """inject is exiting: finish a commit in progress, stop commands and the child, revoke."""
    parts.notify.stopping("stopping")
    parts.applier.settle(SETTLE_S)
    if parts.child is not None:
        parts.child.stop_now()
    if revoke:
        parts.life.revoke_all()
    if parts.persist is not None:
        parts.persist.finish(revoked=revoke)
