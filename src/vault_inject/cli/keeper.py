"""The encrypted state of one run (``[state]``): its key, where it is, reading it (a state
that cannot be used is one log line and ignored, never half-used) and writing it (atomically,
and only when worth it; a failed write is a warning, never the end of the run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import FileWriteError, UsageError

if TYPE_CHECKING:
    from ..client import State
    from ..config import Config
    from ..files import sealed
    from ..model import Request, Secret

log = logging.getLogger(__name__)

REFRESH_S = 600.0  # an unchanged state is written again this often (its age: values confirmed)


class StateKeeper:
    """Reads and writes one state file."""

    def __init__(
        self,
        directory: str,
        key: sealed.Key,
        binding: bytes,
        *,
        refresh_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._key = key
        self._binding = binding
        self._refresh_s = refresh_s
        self._clock = clock
        self._salt: bytes | None = None
        self._content: bytes | None = None
        self._saved_at = 0.0
        self.loaded: State | None = None

    @classmethod
    def of(cls, config: Config, environ: Mapping[str, str]) -> StateKeeper | None:
        """The keeper ``config`` asks for, or None without ``[state] dir``."""
        if not config.state_dir:
            return None
        from ..client import binding
        from ..files import sealed

        try:
            key = sealed.Key.of(_key_material(config, environ))
        except sealed.Refused as exc:
            raise UsageError(f"[state]: {exc}") from None
        return cls(config.state_dir, key, binding(config), refresh_s=REFRESH_S)

    @property
    def path(self) -> str:
        """The state file (for messages)."""
        from ..files import statefile

        return statefile.path_in(self.directory)

    def load(self) -> State | None:
        """The state, or None (none yet, or one that must not be used: said in one line)."""
        from ..client import decode
        from ..files import sealed, statefile

        try:
            data = statefile.load(self.directory)
            if data is None:
                log.info("no state in %s yet", self.directory)
                return None
            plaintext = sealed.unseal(self._key, self._binding, data)
            state = decode(plaintext)
        except sealed.Refused as exc:
            log.warning("state %s %s; ignored (starting as without it)", self.path, exc)
            return None
        except ValueError as exc:
            log.warning("state %s is not readable (%s); ignored (starting as without it)", self.path, exc)
            return None
        except FileWriteError as exc:
            log.warning("%s; the state is ignored (starting as without it)", exc)
            return None
        self._salt = sealed.salt_of(data)
        self.loaded = state
        log.info("read the state %s (saved %ds ago)", self.path, max(0, int(self._clock() - state.saved_at)))
        return state

    def save(self, state: State) -> bool:
        """Write ``state`` when its content changed (or to renew its age); True when written."""
        from ..client import content, encode, worth_saving
        from ..files import sealed, statefile

        now_content = content(state)
        if not worth_saving(self._content, now_content, self._saved_at, state.saved_at, self._refresh_s):
            return False
        try:
            statefile.save(
                self.directory, sealed.seal(self._key, self._binding, encode(state), salt=self._salt)
            )
        except (OSError, FileWriteError) as exc:
            log.warning("could not write the state %s: %s", self.path, exc)
            return False
        self._content, self._saved_at = now_content, state.saved_at
        log.debug("wrote the state %s", self.path)
        return True


def _key_material(config: Config, environ: Mapping[str, str]) -> bytes:
    if config.state_key_file:
        from ..files import statefile

        return statefile.read_key(config.state_key_file)
    value = environ.get(config.state_key_env, "")
    if not value:
        raise UsageError(f"[state] key_env: the environment variable {config.state_key_env} is not set")
    return value.encode()


class RunState:
    """The state of a long-running inject, kept current from the loop: the secrets in use
    and (when inject logged in itself) its token; at exit, without what was revoked."""

    def __init__(
        self, keeper: StateKeeper, *, own_token: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._keeper = keeper
        self._own_token = own_token
        self._clock = clock
        self._last: State | None = keeper.loaded

    def save(self, secrets: Mapping[Request, Secret], token: str) -> None:
        """Write the state if it changed (or is due to have its age renewed)."""
        from ..client import snapshot

        state = snapshot(
            secrets, token=token if self._own_token else "", now=self._clock(), previous=self._last
        )
        self._keeper.save(state)
        self._last = state

    def finish(self, *, revoked: bool) -> None:
        """inject exits: what was revoked leaves the state (the values and certificates stay
        for a start while the server is down)."""
        if revoked and self._last is not None:
            self._keeper.save(self._last.without_hand_over())
