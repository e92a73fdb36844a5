"""Acting on a change, off the loop: re-render, write, check, roll back, template commands.

The supervisor hands a worker one ``ApplyRequest``; the worker runs ``Applier.apply`` and
the loop gets the ``Applied`` back as an event, then tells the child. Everything here may
wait (a server read for a new reference, a slow disk, a ``check = "sleep 8"``): none of it
holds the loop, so signals keep reaching the child meanwhile.

File commits and rollbacks hold ``writing``: an inject that is exiting waits for it (briefly)
so that no commit over several files is left half-done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..config import Config, template_commands
from ..errors import InjectError
from ..identity import Identity
from ..process import Commands
from ..render import Job, Outcome, Rendered

if TYPE_CHECKING:  # annotations only: files is loaded when something is written
    from ..files import Commit, FileWrite

log = logging.getLogger(__name__)

CHECK_TIMEOUT_FACTOR = 3  # the check may take three kill timeouts

# "failed": an output failed to render (its error is logged) and nothing else changed.
Status = Literal["unchanged", "failed", "write_failed", "vetoed", "written"]


@dataclass(frozen=True)
class ApplyRequest:
    """One change to act on: the outputs to re-render and how."""

    outputs: frozenset[str]
    causes: str
    job: Job
    rerender: Callable[[], tuple[Outcome, Rendered]]
    env: Mapping[str, str]  # inject's env plus the rendered env vars (commands get it)


@dataclass
class Applied:
    """What came of an ``ApplyRequest``."""

    request: ApplyRequest
    status: Status
    outcome: Outcome
    rendered: Rendered
    changed: Sequence[str] = field(default_factory=list)
    error: str = ""


class Applier:
    """Runs the write protocol of one change; one at a time (a single worker)."""

    def __init__(
        self,
        *,
        write: Callable[[list[FileWrite]], Commit],
        commands: Commands,
        identity: Identity,
    ) -> None:
        self._write = write
        self._commands = commands
        self._identity = identity
        self.writing = threading.Lock()

    def apply(self, request: ApplyRequest) -> Applied:
        """Re-render, and if anything changed, write, check and run template commands."""
        outcome, rendered = request.rerender()
        if not outcome.changed:
            return Applied(request, "failed" if outcome.failed else "unchanged", outcome, rendered)
        writes = request.job.writes(outcome.files, self._identity)
        try:
            with self.writing:
                commit = self._write(writes)
        except InjectError as exc:
            return Applied(request, "write_failed", outcome, rendered, error=str(exc))
        config = request.job.config
        if not self._check_passes(config, commit, request.env):
            return Applied(request, "vetoed", outcome, rendered)
        self._commands.run_all(template_commands(config, commit.changed), env=request.env)
        return Applied(request, "written", outcome, rendered, changed=commit.changed)

    def _check_passes(self, config: Config, commit: Commit, env: Mapping[str, str]) -> bool:
        if not config.check or not commit.changed:
            return True
        code = self._commands.run(
            config.check,
            env=env,
            timeout_s=config.kill_timeout_s * CHECK_TIMEOUT_FACTOR,
            what="check command",
        )
        if code == 0:
            return True
        log.error("check command failed (exit %d); restoring the previous files, child not told", code)
        try:
            with self.writing:
                commit.rollback()
        except InjectError as exc:
            log.error("%s", exc)
        return False

    def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for a commit in progress to finish: inject is exiting."""
        if self.writing.acquire(timeout=timeout_s):
            self.writing.release()
        self._commands.kill_all()
