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
  template commands (``Applier``); then the loop restarts, signals or leaves the child;
* ``reload``: a template source or the config file changed; ``reconcile``: sources edited
  before the file watcher was up.

``Lifecycle`` is used by one thread at a time: by its worker while a ``life`` job runs,
otherwise by the loop (what the loop wants meanwhile waits in ``_life_later``).
Without a command (``inject watch``) the same loop runs with no child.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import backoff
from .apply import Applied, Applier, ApplyRequest
from .config import Config
from .controller import ChildController
from .debounce import Debouncer
from .engine import Engine, Job, Outcome
from .errors import InjectError, PermissionDenied
from .inbox import STOP_SIGNALS, Signal
from .lifecycle import Lifecycle
from .model import Secret, SecretKey
from .polling import PollTimer
from .sources import Event, EventQueue, FilesChanged, PollDone, WorkDone, Workers, read_all

log = logging.getLogger(__name__)

IDLE_WAKE_S = 1.0  # safety net: reap even if a SIGCHLD was coalesced
WRITE_RETRY_S = 2.0  # first retry of a failed write; doubles up to WRITE_RETRY_MAX_S
WRITE_RETRY_MAX_S = 60.0
IN_FLIGHT_ATTEMPT = 4  # a re-read in flight is not started again for ~8s
RECONCILE_AFTER_S = (0.0, 1.0)  # compare template sources once the watcher is up
SETTLE_S = 2.0  # at exit, wait this long for a file commit in progress

Reader = Callable[[str, int | None], Secret]


@dataclass
class Collaborators:
    """What the loop works with, built by ``app`` (fakes in the unit tests)."""

    events: EventQueue
    workers: Workers
    life: Lifecycle
    applier: Applier
    poll_read: Reader
    refresh_read: Reader
    reap: Callable[[], None]
    child: ChildController | None = None
    rebuild_job: Callable[[], Job] | None = None
    reconcile: Callable[[], frozenset[str]] | None = None
    auth_file: str = ""
    base_env: Mapping[str, str] = field(default_factory=dict)


class Supervisor:
    """Keeps the rendered outputs fresh and, with a command, supervises the child."""

    def __init__(
        self,
        *,
        config: Config,
        engine: Engine,
        parts: Collaborators,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        self.p = parts
        self._clock = clock
        self._polls = PollTimer(config.poll_interval_s, clock=clock)
        self._debounce = Debouncer(config.wait_min_s, config.wait_max_s)
        self._pending: set[str] = set()
        self._causes: list[str] = []
        self._write_retry: tuple[float, set[str], str] | None = None
        self._write_failures = 0
        self._write_error = ""
        self._life_later: list[Callable[[], None]] = []
        self._refresh_attempts = 0
        self._relogin_tried = False
        self._new_job: Job | None = None
        self._reload_causes = "templates changed"
        self._reconcile_at = [clock() + d for d in RECONCILE_AFTER_S] if parts.reconcile else []
        self._exit: int | None = None
        self.p.life.track(engine.secrets)

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until the child is gone (or, with no command, until TERM/INT); the exit code."""
        child = self.p.child
        if child is not None:
            child.start()
        while True:
            self._after_event()
            if self._exit is not None:
                return self._exit
            self._dispatch(self._next_event())

    def _after_event(self) -> None:
        child = self.p.child
        if child is not None:
            child.poll()
            if child.exit_code is not None:
                self._exit = child.exit_code
                return
        else:
            self.p.reap()
        self._run_timers()

    def _next_event(self) -> Event | None:
        now = self._clock()
        try:
            event: Event = self.p.events.get(timeout=max(0.0, min(self._wake_times(now)) - now))
        except queue.Empty:
            return None
        return event

    def _wake_times(self, now: float) -> list[float]:
        """Every timer the loop must wake for; while stopping, only the child's."""
        times = [now + IDLE_WAKE_S]
        times += [at for at in (self._child_next_at(),) if at is not None]
        if self._stopping:
            return times
        times += [self._polls.next_at, *self._reconcile_at]
        if self._write_retry is not None:
            times.append(self._write_retry[0])
        debounce_at = None if self._apply_blocked else self._debounce.due_at()
        return times + [at for at in (debounce_at, self._life_next_at()) if at is not None]

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
            "life": self._on_life,
            "apply": self._on_applied,
            "reload": self._on_reload,
            "reconcile": self._on_reconciled,
        }
        handlers[done.name](value)

    @property
    def _stopping(self) -> bool:
        return self.p.child is not None and self.p.child.stop_signal is not None

    def _run_timers(self) -> None:
        now, workers = self._clock(), self.p.workers
        if self._stopping:
            return
        if self._polls.due() and not workers.busy("poll"):
            self._start_poll()
        if not workers.busy("life") and (self._life_next_at() or math.inf) <= now:
            self._start_life(self.p.life.run_due)
        while self._reconcile_at and self._reconcile_at[0] <= now and self.p.reconcile:
            self._reconcile_at.pop(0)
            workers.start("reconcile", self.p.reconcile)
        if self._write_retry is not None and now >= self._write_retry[0]:
            _, outputs, causes = self._write_retry
            self._write_retry = None
            self._mark(outputs, [causes])
        self._maybe_apply(now)

    def _child_next_at(self) -> float | None:
        return self.p.child.next_at() if self.p.child is not None else None

    # --- signals ------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # the controller reaps after every event
        if self.p.child is not None:
            self.p.child.forward(signum)
        elif signum in STOP_SIGNALS:  # sidecar: TERM/INT/QUIT end the watch, HUP polls now
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._exit = 0
        elif signum == signal.SIGHUP:
            self._polls.now()

    # --- polling ------------------------------------------------------------------------

    def _start_poll(self) -> None:
        keys = self.engine.polled_keys()
        if not keys:
            self._polls.skipped()
            return
        self._polls.started()
        self.p.workers.start("poll", lambda: read_all(self.p.poll_read, keys))

    def _on_poll(self, value: object) -> None:
        done = value if isinstance(value, PollDone) else PollDone()
        self._polls.finished(done.outage)
        self._note_errors(done)
        self._absorb(done.fresh)

    def _absorb(self, fresh: Mapping[SecretKey, Secret]) -> None:
        self._with_life(lambda: self.p.life.track(fresh))
        changed = self.engine.absorb(fresh)
        if changed:
            self._mark(self.engine.outputs_using(changed), changed.values())

    def _note_errors(self, done: PollDone) -> None:
        rejected = any(isinstance(e, PermissionDenied) and e.token_rejected for e in done.failed.values())
        if rejected and not self._relogin_tried and self.p.life.can_relogin:
            # Revoked or expired from outside: log in once more (the next poll catches up).
            self._relogin_tried = True
            self._relogin("the server no longer accepts inject's token")
            return
        self._relogin_tried = self._relogin_tried and rejected
        self._polls.report(done.failed, done.fresh)

    # --- leases, certificates, token (Lifecycle on its worker) ---------------------------

    def _life_next_at(self) -> float | None:
        return None if self.p.workers.busy("life") else self.p.life.next_at()

    def _with_life(self, action: Callable[[], None]) -> None:
        if self.p.workers.busy("life"):
            self._life_later.append(action)
        else:
            action()

    def _start_life(self, job: Callable[[], list[SecretKey]]) -> None:
        self.p.workers.start("life", job)

    def _relogin(self, reason: str) -> None:
        def job() -> list[SecretKey]:
            self.p.life.relogin(reason=reason)
            return []  # a new token re-plans the leases it affects itself

        self._with_life(lambda: self._start_life(job))

    def _on_life(self, value: object) -> None:
        later, self._life_later = self._life_later, []
        for action in later:
            self._with_life(action)
        keys = list(value) if isinstance(value, list) else []
        if keys:
            self.p.workers.start("refresh", lambda: read_all(self.p.refresh_read, keys))
            # In flight (or waiting for the one in flight): not due again soon.
            self._with_life(lambda: self._postpone(keys, IN_FLIGHT_ATTEMPT))

    def _postpone(self, keys: Iterable[SecretKey], attempt: int) -> None:
        for key in keys:
            self.p.life.postpone(key, attempt)

    def _on_refresh(self, value: object) -> None:
        done = value if isinstance(value, PollDone) else PollDone()
        if done.outage is not None:
            self._refresh_attempts += 1
            attempts = self._refresh_attempts
            self._with_life(
                lambda: self._postpone([k for k in self.p.life.plans if k not in done.fresh], attempts)
            )
        else:
            self._refresh_attempts = 0
        self._note_errors(done)
        self._absorb(done.fresh)

    # --- file changes -------------------------------------------------------------------

    def _on_files(self, paths: frozenset[str]) -> None:
        auth_file = {self.p.auth_file} if self.p.auth_file else set()
        if paths & auth_file:
            self._relogin(f"{self.p.auth_file} changed")
        if (paths - auth_file) and self.p.rebuild_job is not None:
            rebuild = self.p.rebuild_job
            self._reload_causes = f"{', '.join(sorted(paths - auth_file))} changed"
            self.p.workers.start("reload", rebuild)

    def _on_reconciled(self, value: object) -> None:
        if isinstance(value, frozenset) and value:
            self._on_files(value)

    def _on_reload(self, value: object) -> None:
        if isinstance(value, InjectError):
            log.error("%s (keeping the previous templates)", value)
        elif isinstance(value, Job):
            self._new_job = value

    def _swap_job(self) -> None:
        job, self._new_job = self._new_job, None
        if job is None:
            return
        removed = self.engine.all_outputs()
        self.engine.job = job
        self.config = job.config
        self._debounce = Debouncer(self.config.wait_min_s, self.config.wait_max_s)
        self.engine.forget(removed - self.engine.all_outputs())
        self._mark(self.engine.all_outputs(), [self._reload_causes])

    # --- acting on changes --------------------------------------------------------------

    def _mark(self, outputs: Iterable[str], causes: Iterable[str]) -> None:
        outputs = set(outputs)
        if outputs:
            self._pending |= outputs
            self._causes.extend(c for c in causes if c not in self._causes)
            self._debounce.touch(self._clock())

    @property
    def _apply_blocked(self) -> bool:
        """A change is being applied, or the child is being restarted: the next one waits
        (and is looked at again when that job or restart reports back)."""
        return self.p.workers.busy("apply") or (self.p.child is not None and self.p.child.busy)

    def _maybe_apply(self, now: float) -> None:
        if self._apply_blocked:
            return
        self._swap_job()
        if not self._debounce.due(now):
            return
        self._debounce.reset()
        outputs, self._pending = frozenset(self._pending), set()
        causes, self._causes = "; ".join(self._causes) or "change", []
        known, engine = self.engine.snapshot(), self.engine
        request = ApplyRequest(
            outputs=outputs,
            causes=causes,
            job=engine.job,
            rerender=lambda: engine.rerender(outputs, known),
            env={**self.p.base_env, **engine.env},
        )
        self.p.workers.start("apply", lambda: self.p.applier.apply(request))

    def _on_applied(self, value: object) -> None:
        if not isinstance(value, Applied):
            return
        request = value.request
        if value.status == "unchanged":
            self.engine.accept(value.rendered)
            log.info("%s; output unchanged", request.causes)
        elif value.status == "write_failed":
            self._retry_write_later(set(request.outputs), request.causes, value.error)
        elif value.status == "written":
            if self._write_failures:
                log.info("files written after %d failed attempt(s)", self._write_failures)
            self._write_failures, self._write_error = 0, ""
            self.engine.accept(value.rendered)
            self._tell_child(value.outcome, request.causes)

    def _retry_write_later(self, outputs: set[str], causes: str, error: str) -> None:
        """The secrets were taken in but the files could not be written (disk full, read-only):
        try again later, or the update would wait for the next secret change."""
        if error != self._write_error:  # once per distinct failure, not every retry
            self._write_error = error
            log.error("%s; files left as they were, child not told; will retry", error)
        self._write_failures += 1
        delay = backoff.delay_s(self._write_failures, initial_s=WRITE_RETRY_S, max_s=WRITE_RETRY_MAX_S)
        self._write_retry = (self._clock() + delay, outputs, causes)

    def _tell_child(self, outcome: Outcome, causes: str) -> None:
        child, mode = self.p.child, self.config.on_change
        if child is None or mode == "none" or not child.pid:
            log.info("%s; %d file(s) updated", causes, len(outcome.files))
            return
        if outcome.env_changed or mode == "restart":
            child.restart(causes + ("; env changed" if outcome.env_changed else ""))
            return
        name = signal.Signals(self.config.reload_signal).name
        log.info("%s; sending %s to child pid %d", causes, name, child.pid)
        child.reload(self.config.reload_signal)


def stop_everything(parts: Collaborators, *, revoke: bool) -> None:
    """inject is exiting: finish a commit in progress, stop commands and the child, revoke."""
    parts.applier.settle(SETTLE_S)
    if parts.child is not None:
        parts.child.stop_now()
    if revoke:
        parts.life.revoke_all()
