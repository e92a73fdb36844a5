"""Builds the long-running loop's collaborators from what startup produced, and runs it.

One client per thread that talks to the server (poll, refresh, lifecycle and re-render
reads), each with its own retry budget: after startup the loop backs off, not each request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Config
from ..identity import Identity
from ..observe import Snapshot
from ..process import INBOX, ChildController, OutputRelay, child
from ..render import Engine, Job
from .apply import Applier
from .lifecycle import Lifecycle
from .sources import EventQueue, Workers
from .stale import StaleStart, StartedStale
from .supervisor import Collaborators, Notify, Persist, Silent, Supervisor, stop_everything

if TYPE_CHECKING:  # annotations only: the client loads hvac and requests, which a
    # plain PID 1 (nothing to render) never needs
    from ..client import Authenticator, Login, VaultClient
    from ..files import Commit
    from ..model import FileWrite

RUNNING_RETRY_TIMEOUT_S = 2.0  # lifecycle and re-render reads
POLL_RETRY_TIMEOUT_S = 0.0  # one attempt per poll or refresh; the loop backs off


@dataclass(frozen=True)
class Startup:
    """What the first render left: the engine, the logged-in client, the commands runner."""

    config: Config
    environ: Mapping[str, str]
    engine: Engine
    client: VaultClient
    authenticator: Authenticator | None
    grant: Login | None
    base_env: Mapping[str, str]
    auth_file: str
    identity: Identity
    reaper: child.Reaper
    commands: child.Commands
    rebuild_job: Callable[[], Job]
    reconcile: Callable[[], frozenset[str]]
    publish: Callable[[Snapshot], None] | None = None  # health and metrics, when listening
    persist: Persist | None = None  # the encrypted state, when configured
    notify: Notify | None = None  # systemd's NOTIFY_SOCKET, when set
    stale: StartedStale | None = None  # started from the state's values: the server did not answer


def supervise(startup: Startup, argv: Sequence[str] | None, events: EventQueue) -> int:
    """Run the loop until the child is gone (or TERM without a child); the exit code."""
    relay = OutputRelay().start() if argv and startup.config.mask_output else None
    parts = collaborators(startup, argv, events, relay.child_fds if relay else None)
    supervisor = Supervisor(config=startup.config, engine=startup.engine, parts=parts)
    child.become_subreaper()
    INBOX.hand_over()
    try:
        return supervisor.run()
    finally:
        # handed over: the token and leases stay, in the state, for the next inject; still on
        # the state's values: nothing of this run to revoke, the state stays as it was
        config = supervisor.config
        revoke = config.revoke_on_exit and not config.hand_over and not supervisor.stale
        stop_everything(parts, revoke=revoke)
        if relay is not None:  # the child is gone: what it left in the pipes is written
            relay.close()


def collaborators(
    startup: Startup,
    argv: Sequence[str] | None,
    events: EventQueue,
    output: tuple[int, int] | None = None,
) -> Collaborators:
    """Clients per worker, lifecycle, applier and child controller (``output``: the child's
    stdout and stderr when it is masked)."""
    base = startup.client
    # One client per worker thread (they run at the same time): lifecycle, re-render reads
    # (the apply worker), polls, re-reads of leases.
    running = base.clone(retry_timeout_s=RUNNING_RETRY_TIMEOUT_S)
    render = base.clone(retry_timeout_s=RUNNING_RETRY_TIMEOUT_S)
    poll = base.clone(retry_timeout_s=POLL_RETRY_TIMEOUT_S)
    refresh = base.clone(retry_timeout_s=POLL_RETRY_TIMEOUT_S)
    engine = startup.engine
    engine.reader = render

    def new_token(token: str) -> None:
        for other in (render, poll, refresh):
            other.set_token(token)

    life = Lifecycle(
        running,
        authenticator=startup.authenticator,
        grant=startup.grant,
        on_new_token=new_token,
        reread_threshold=startup.config.reread_threshold,
    )
    return Collaborators(
        events=events,
        workers=Workers(events),
        life=life,
        applier=Applier(write=_write_all, commands=startup.commands, identity=startup.identity),
        poll_read=poll.fetch,
        refresh_read=refresh.fetch,
        reap=startup.reaper.reap,
        child=_controller(startup, argv, output) if argv else None,
        rebuild_job=startup.rebuild_job,
        reconcile=startup.reconcile,
        auth_file=startup.auth_file,
        base_env=startup.base_env,
        publish=startup.publish,
        persist=startup.persist,
        notify=startup.notify or Silent(),
        stale=StaleStart(startup.stale, poll) if startup.stale is not None else None,
    )


def _write_all(writes: list[FileWrite]) -> Commit:
    # the files package is loaded by the first write: a plain PID 1
    # whose config never gains a template never writes
    from ..files import write as files

    return files.write_all(writes)


def _controller(startup: Startup, argv: Sequence[str], output: tuple[int, int] | None) -> ChildController:
    engine, base_env, config = startup.engine, startup.base_env, startup.config
    return ChildController(
        child.Processes(startup.reaper, output),
        argv=argv,
        identity=startup.identity,
        env=lambda: {**base_env, **engine.env},
        kill_signal=config.kill_signal,
        kill_timeout_s=config.kill_timeout_s,
    )
