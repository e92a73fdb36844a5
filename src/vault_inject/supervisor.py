"""The loop that keeps secrets fresh and owns the running child.

One queue of events (signals, poll results, file changes), one decision per event:

* a forwarded signal goes to the child's process group; TERM/INT/QUIT also start the
  stop clock (kill timeout, then SIGKILL) and end inject when the child is gone;
* SIGCHLD runs the one reaper loop (every zombie reaped, our children's codes kept);
* a poll reads every KV secret in use (one request per distinct path) in a thread;
  new versions mark the outputs that used them, debounced by ``wait`` min/max;
* an edit of a template source or the config file re-renders; a token file edit
  swaps the token;
* when the debounce is due, only the marked outputs are re-rendered; changed files
  are written (all of them or none), the ``check`` command may veto and roll back,
  per-template commands run, then the child is restarted, signalled or left alone.

Without a command (``inject watch``) the same loop runs with no child.
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType

from . import backoff, child, files
from .child import FORWARDED_SIGNALS, STOP_SIGNALS, Reaper
from .config import Config, template_commands
from .debounce import Debouncer
from .engine import Engine, Job, Outcome
from .errors import InjectError, PermissionDenied
from .lifecycle import Lifecycle, Relogin
from .model import Identity
from .sources import Event, EventQueue, FilesChanged, FileWatcher, PollDone, Poller, Signal
from .vault import Login, VaultClient

log = logging.getLogger(__name__)

IDLE_WAKE_S = 1.0  # safety net: reap even if a SIGCHLD was coalesced
POLL_RETRY_TIMEOUT_S = 0.0  # one attempt per poll; the loop itself backs off
RUNNING_RETRY_TIMEOUT_S = 2.0
WRITE_RETRY_S = 2.0  # first retry of a failed write; doubles up to WRITE_RETRY_MAX_S
WRITE_RETRY_MAX_S = 60.0
IN_FLIGHT_ATTEMPT = 4  # a re-read in flight is not started again for ~8s
OUTAGE_INITIAL_S = 1.0


class Supervisor:
    """Keeps the rendered outputs fresh and, with a command, supervises the child."""

    def __init__(
        self,
        *,
        config: Config,
        engine: Engine,
        client: VaultClient,
        base_env: Mapping[str, str],
        identity: Identity | None = None,
        rebuild_job: Callable[[], Job] | None = None,
        authenticator: Relogin | None = None,
        grant: Login | None = None,
        watched_auth_file: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        self.client = client
        self._base_env = dict(base_env)
        self._identity = identity or Identity()
        self._rebuild_job = rebuild_job
        self._auth_file = watched_auth_file
        self._clock = clock
        self._events: EventQueue = queue.SimpleQueue()
        self._reaper = Reaper()
        client.retry_timeout_s = RUNNING_RETRY_TIMEOUT_S  # the loop backs off, not each request
        self._poll_client = client.clone(retry_timeout_s=POLL_RETRY_TIMEOUT_S)
        self._refresh_client = client.clone(retry_timeout_s=POLL_RETRY_TIMEOUT_S)
        self._poller = Poller(self._poll_client.read, self._events)
        self._refresher = Poller(self._refresh_client.read, self._events, purpose="refresh")
        self._life = Lifecycle(
            client,
            authenticator=authenticator,
            grant=grant,
            on_new_token=self._new_token,
            reread_threshold=config.reread_threshold,
            clock=clock,
        )
        self._life.track(engine.secrets)
        self._refresh_attempts = 0
        self._relogin_tried = False
        self._debounce = Debouncer(config.wait_min_s, config.wait_max_s)
        self._pending: set[str] = set()
        self._causes: list[str] = []
        self._write_retry: tuple[float, set[str], str] | None = None
        self._write_failures = 0
        self._write_error = ""
        self._pid = 0
        self._argv: Sequence[str] = ()
        self._restarting = False
        self._stopping: int | None = None
        self._kill_at: float | None = None
        self._next_poll_at = 0.0
        self._poll_started_at: float | None = None
        self._outage_attempts = 0
        self._poll_errors: dict[str, str] = {}
        self._exit: int | None = None

    # --- set up -------------------------------------------------------------------------

    def install_handlers(self) -> None:
        """Handle every forwardable signal and SIGCHLD by queueing an event."""
        for signum in (*FORWARDED_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        for signum in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._events.put(Signal(signum))  # SimpleQueue.put is safe in a signal handler

    def run(self, argv: Sequence[str] | None) -> int:
        """Run until the child exits (or, with no command, until TERM/INT); the exit code."""
        self.install_handlers()
        child.become_subreaper()
        watcher = FileWatcher(self._watched_files(), self._events)
        watcher.start()
        self._schedule_poll()
        try:
            if argv:
                self._argv = argv
                self._start_child()
            return self._loop()
        finally:
            watcher.stop()
            if self._pid:  # never leave an orphaned child behind
                self._stop_child_now()
            if self.config.revoke_on_exit:
                self._life.revoke_all()

    def _watched_files(self) -> list[str]:
        paths = [spec.source for spec in self.config.templates if spec.source]
        paths += [self.config.config_file or "", self._auth_file]
        return [p for p in paths if p]

    # --- the loop -----------------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            self._reap()
            if self._exit is not None:
                return self._exit
            self._dispatch(self._next_event())
            self._run_timers()

    def _next_event(self) -> Event | None:
        now = self._clock()
        deadlines = [now + IDLE_WAKE_S, self._next_poll_at]
        retry_at = self._write_retry[0] if self._write_retry is not None else None
        for at in (self._kill_at, self._debounce.due_at(), self._life.next_at(), retry_at):
            if at is not None:
                deadlines.append(at)
        try:
            return self._events.get(timeout=max(0.0, min(deadlines) - now))
        except queue.Empty:
            return None

    def _dispatch(self, event: Event | None) -> None:
        if isinstance(event, Signal):
            self._on_signal_event(event.signum)
        elif isinstance(event, PollDone):
            self._on_poll(event)
        elif isinstance(event, FilesChanged):
            self._on_files(event.paths)

    def _run_timers(self) -> None:
        now = self._clock()
        if self._kill_at is not None and now >= self._kill_at and self._pid:
            log.warning(
                "child pid %d still running after %.3gs; sending SIGKILL", self._pid, self._kill_timeout_s
            )
            child.signal_group(self._pid, signal.SIGKILL)
            self._kill_at = None
        if now >= self._next_poll_at and not self._poller.busy and self._stopping is None:
            self._poll()
        if self._stopping is None:
            self._refresh_due()
        if self._write_retry is not None and now >= self._write_retry[0]:
            _, outputs, causes = self._write_retry
            self._write_retry = None
            self._mark(outputs, [causes])
        if self._debounce.due(now) and not self._restarting and self._stopping is None:
            self._debounce.reset()
            self._act()

    @property
    def _kill_timeout_s(self) -> float:
        return self.config.kill_timeout_s

    # --- signals and the child ----------------------------------------------------------

    def _on_signal_event(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaping happens at the top of every loop turn
        if not self._argv:  # sidecar: TERM/INT/QUIT end the watch, HUP polls now
            if signum in STOP_SIGNALS:
                log.info("received %s; stopping", signal.Signals(signum).name)
                self._exit = 0
            elif signum == signal.SIGHUP:
                self._next_poll_at = self._clock()
            return
        if signum in STOP_SIGNALS and self._stopping is None:
            self._stopping = signum
            self._restarting = False
        if self._pid:
            log.debug("forwarding %s to pid %d", signal.Signals(signum).name, self._pid)
            child.signal_group(self._pid, signum)
            if signum in STOP_SIGNALS and self._kill_at is None:
                self._kill_at = self._clock() + self._kill_timeout_s

    def _reap(self) -> None:
        if not self._pid:
            self._reaper.reap()
            return
        code = self._reaper.pop(self._pid)
        if code is None:
            return
        old_pid, self._pid, self._kill_at = self._pid, 0, None
        if self._restarting and self._stopping is None:
            self._restarting = False
            log.debug("child pid %d stopped (code %d) for restart", old_pid, code)
            self._start_child()
            return
        log.info("child pid %d exited with code %d", old_pid, code)
        self._exit = code

    def _start_child(self) -> None:
        env = {**self._base_env, **self.engine.env}
        try:
            self._pid = self._reaper.track(child.spawn(self._argv, env, self._identity))
        except InjectError as exc:
            log.error("%s", exc)
            self._exit = exc.exit_code
            return
        log.info("started %s (pid %d)", self._argv[0], self._pid)

    def _restart_child(self, reason: str) -> None:
        if not self._pid:
            if self._argv and self._stopping is None:
                self._start_child()
            return
        log.info("%s; restarting child pid %d", reason, self._pid)
        self._restarting = True
        child.signal_group(self._pid, self.config.kill_signal)
        self._kill_at = self._clock() + self._kill_timeout_s

    def _stop_child_now(self) -> None:
        child.signal_group(self._pid, self.config.kill_signal)
        if self._reaper.wait(self._pid, self._kill_timeout_s) is None:
            child.signal_group(self._pid, signal.SIGKILL)
            self._reaper.wait(self._pid, 5.0)
        self._pid = 0

    # --- polling ------------------------------------------------------------------------

    def _schedule_poll(self, delay_s: float | None = None) -> None:
        now = self._clock()
        if delay_s is not None:
            self._next_poll_at = now + delay_s
            return
        # Fixed rate: the interval counts from the start of the last poll, not its end.
        start = self._poll_started_at if self._poll_started_at is not None else now
        self._next_poll_at = max(now, start + backoff.jittered(self.config.poll_interval_s))

    def _poll(self) -> None:
        keys = self.engine.polled_keys()
        self._poll_started_at = self._clock()
        self._next_poll_at = float("inf")  # rescheduled when the poll reports back
        if not keys or not self._poller.start(keys):
            self._schedule_poll()

    def _refresh_due(self) -> None:
        keys = self._life.run_due()
        if keys and self._refresher.start(keys):
            for key in keys:
                self._life.postpone(key, IN_FLIGHT_ATTEMPT)

    def _on_refresh(self, done: PollDone) -> None:
        if done.outage is not None:
            self._refresh_attempts += 1
            for key in self._life.plans:
                if key not in done.fresh:
                    self._life.postpone(key, self._refresh_attempts)
        else:
            self._refresh_attempts = 0
        self._note_poll_errors(done)
        self._life.track(done.fresh)
        changed = self.engine.absorb(done.fresh)
        if changed:
            self._mark(self.engine.outputs_using(changed), changed.values())

    def _new_token(self, token: str) -> None:
        for other in (self._poll_client, self._refresh_client):
            other.set_token(token)

    def _on_poll(self, done: PollDone) -> None:
        if done.purpose == "refresh":
            self._on_refresh(done)
            return
        if done.outage is not None:
            self._outage_attempts += 1
            if self._outage_attempts == 1:
                log.warning("server unreachable, keeping the last good secrets: %s", done.outage)
            interval = self.config.poll_interval_s
            delay = backoff.delay_s(
                self._outage_attempts, initial_s=OUTAGE_INITIAL_S, max_s=interval, jitter_s=interval / 4
            )
            self._schedule_poll(delay)
        else:
            if self._outage_attempts:
                log.info("server reachable again after %d failed poll(s)", self._outage_attempts)
            self._outage_attempts = 0
            self._schedule_poll()
        self._note_poll_errors(done)
        changed = self.engine.absorb(done.fresh)
        if changed:
            self._mark(self.engine.outputs_using(changed), changed.values())

    def _note_poll_errors(self, done: PollDone) -> None:
        rejected = any(isinstance(e, PermissionDenied) and e.token_rejected for e in done.failed.values())
        if rejected and not self._relogin_tried and self._life.can_relogin:
            # Revoked or expired from outside: log in once more (the next poll catches up).
            self._relogin_tried = True
            if self._life.relogin(reason="the server no longer accepts inject's token"):
                return
        self._relogin_tried = self._relogin_tried and rejected
        for (path, _), exc in done.failed.items():
            if self._poll_errors.get(path) != str(exc):
                self._poll_errors[path] = str(exc)
                log.error("%s (keeping the last good version)", exc)
        for path, _ in done.fresh:
            self._poll_errors.pop(path, None)

    def _mark(self, outputs: set[str], causes: Iterable[str]) -> None:
        if outputs:
            self._pending |= outputs
            self._causes.extend(c for c in causes if c not in self._causes)
            self._debounce.touch(self._clock())

    # --- file changes -------------------------------------------------------------------

    def _on_files(self, paths: frozenset[str]) -> None:
        auth_file = {self._auth_file} if self._auth_file else set()
        if paths & auth_file:
            self._life.relogin(reason=f"{self._auth_file} changed")
        if (paths - auth_file) and self._rebuild_job is not None:
            self._reload_job(paths)

    def _reload_job(self, paths: frozenset[str]) -> None:
        if self._rebuild_job is None:
            return
        try:
            job = self._rebuild_job()
        except InjectError as exc:
            log.error("%s (keeping the previous templates)", exc)
            return
        removed = self.engine.all_outputs()
        self.engine.job = job
        self.config = job.config
        self._debounce = Debouncer(self.config.wait_min_s, self.config.wait_max_s)
        self.engine.forget(removed - self.engine.all_outputs())
        self._mark(self.engine.all_outputs(), [f"{', '.join(sorted(paths))} changed"])

    # --- acting on changes --------------------------------------------------------------

    def _act(self) -> None:
        outputs, self._pending = self._pending, set()
        causes, self._causes = "; ".join(self._causes) or "change", []
        outcome, rendered = self.engine.rerender(outputs)
        if not outcome.changed:
            self.engine.accept(rendered)
            log.info("%s; output unchanged", causes)
            return
        commit = self._write(outcome)
        if commit is None:
            self._retry_write_later(outputs, causes)
            return
        self._write_failures, self._write_error = 0, ""
        if not self._check_passes(commit):
            return
        self.engine.accept(rendered)
        self._run_template_commands(commit.changed)
        self._tell_child(outcome, causes)

    def _write(self, outcome: Outcome) -> files.Commit | None:
        writes = self.engine.job.writes(outcome.files, self._identity)
        try:
            commit = files.write_all(writes)
        except InjectError as exc:
            if str(exc) != self._write_error:  # once per distinct failure, not every retry
                self._write_error = str(exc)
                log.error("%s; files left as they were, child not told; will retry", exc)
            return None
        if self._write_failures:
            log.info("files written after %d failed attempt(s)", self._write_failures)
        return commit

    def _retry_write_later(self, outputs: set[str], causes: str) -> None:
        """The secrets were taken in but the files could not be written (disk full, read-only):
        try again later, or the update would wait for the next secret change."""
        self._write_failures += 1
        delay = backoff.delay_s(self._write_failures, initial_s=WRITE_RETRY_S, max_s=WRITE_RETRY_MAX_S)
        self._write_retry = (self._clock() + delay, outputs, causes)

    def _check_passes(self, commit: files.Commit) -> bool:
        if not self.config.check or not commit.changed:
            return True
        code = child.run_shell(
            self.config.check,
            env=self._base_env,
            timeout_s=self.config.kill_timeout_s * 3,
            reaper=self._reaper,
            what="check command",
        )
        if code == 0:
            return True
        log.error("check command failed (exit %d); restoring the previous files, child not told", code)
        try:
            commit.rollback()
        except InjectError as exc:
            log.error("%s", exc)
        return False

    def _run_template_commands(self, changed: Sequence[str]) -> None:
        env = {**self._base_env, **self.engine.env}
        child.run_commands(template_commands(self.config, changed), env=env, reaper=self._reaper)

    def _tell_child(self, outcome: Outcome, causes: str) -> None:
        mode = self.config.on_change
        if not self._argv or mode == "none" or not self._pid:
            log.info("%s; %d file(s) updated", causes, len(outcome.files))
            return
        if outcome.env_changed or mode == "restart":
            self._restart_child(causes + ("; env changed" if outcome.env_changed else ""))
            return
        name = signal.Signals(self.config.reload_signal).name
        log.info("%s; sending %s to child pid %d", causes, name, self._pid)
        child.signal_group(self._pid, self.config.reload_signal)
