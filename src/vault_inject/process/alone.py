"""The child alone: ``inject -- CMD`` with nothing to render and nothing that can change.

With no template, no secret reference, no config file (an edit to it could add either)
and no ``--listen``, nothing will ever read a secret, write a file or report health, so
the refresh loop (supervisor, lifecycle, workers, file watcher) is not even imported:
start-up is what a plain PID 1 in a container pays at every start. What stays is what
makes inject a correct init: every signal forwarded to the child's process group, a stop
followed by SIGKILL after ``kill_timeout``, orphans reaped, and inject's exit code is the
child's (the ``ChildController`` the full loop uses too).
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..config import Config
from ..identity import Identity
from . import child
from .controller import ChildController
from .relay import OutputRelay
from .signals import INBOX, Signal

IDLE_WAKE_S = 1.0  # safety net: reap even if a SIGCHLD was coalesced


def applies(
    config: Config, env_values: Sequence[tuple[str, str]], needs_server: Callable[[str], bool]
) -> bool:
    """True when nothing could ever need the refresh loop: no env value ``needs_server`` (a
    reference or a template), no template, no config file, no endpoints. Pure."""
    return not (
        config.templates
        or config.config_file
        or config.listen
        or any(needs_server(value) for _, value in env_values)
    )


def run(config: Config, env: Mapping[str, str], argv: Sequence[str], identity: Identity) -> int:
    """Start ``argv`` (or exec it, with ``--no-watch``) and stay with it until it is gone."""
    if config.no_watch:
        child.exec_in_place(argv, env, identity)
    relay = OutputRelay().start() if config.mask_output else None
    controller = ChildController(
        child.Processes(child.Reaper(), relay.child_fds if relay else None),
        argv=argv,
        identity=identity,
        env=lambda: env,
        kill_signal=config.kill_signal,
        kill_timeout_s=config.kill_timeout_s,
    )
    child.become_subreaper()
    INBOX.hand_over()
    try:
        return loop(controller, INBOX.events)
    finally:
        controller.stop_now()
        if relay is not None:
            relay.close()


class Events(Protocol):
    """What the loop reads events from (``queue.SimpleQueue``; a script in the unit tests)."""

    def get(self, block: bool = ..., timeout: float | None = ...) -> object: ...


def loop(
    controller: ChildController,
    events: Events,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Signals to the controller until the child and its leftovers are gone; the exit code."""
    controller.start()
    while True:
        controller.poll()
        if controller.exit_code is not None:
            return controller.exit_code
        now = clock()
        wake = min(now + IDLE_WAKE_S, controller.next_at() or now + IDLE_WAKE_S)
        try:
            event = events.get(timeout=max(0.0, wake - now))
        except queue.Empty:
            continue
        if isinstance(event, Signal) and event.signum != signal.SIGCHLD:
            controller.forward(event.signum)  # SIGCHLD: the poll above reaps
