"""The library's own token, kept valid from the background thread as inject keeps its own.

Renewed at 2/3 of its TTL while the server extends it; when it cannot be extended (or a
renewal is refused) the configured auth method obtains a new one (a token file is read
again; the other methods log in again) and both clients use it from then on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..client import Authenticator, Login, Plan, VaultClient
from ..errors import InjectError, UnreachableError
from . import plan as runtime_plan
from .plan import TOKEN_KEY, Schedule

log = logging.getLogger(__name__)


class TokenKeeper:
    """Renews or replaces the token when its plan in the shared ``Schedule`` comes due."""

    def __init__(
        self,
        *,
        client: VaultClient,
        foreground: VaultClient,
        authenticator: Authenticator,
        schedule: Schedule,
        lock: threading.Condition,
        clock: Callable[[], float],
    ) -> None:
        self._client, self._foreground, self._auth = client, foreground, authenticator
        self._schedule, self._lock, self._clock = schedule, lock, clock
        self.expires_at: float | None = None  # monotonic; None: does not expire (or unknown)

    def plan(self, grant: Login) -> None:
        """Plan the next renewal of a token just obtained (call with the lock held)."""
        now = self._clock()
        plan = runtime_plan.token_plan(ttl_s=grant.ttl_s, renewable=grant.renewable, now=now)
        self._schedule.plan(TOKEN_KEY, plan)
        self.expires_at = now + grant.ttl_s if grant.ttl_s > 0 else None

    def due(self, plan: Plan) -> float | None:
        """Act on the due plan; return when the replaced token ends if a new one was obtained."""
        if plan.action == "renew":
            return self._renew(plan)
        return self._relogin(reason="the token cannot be renewed further")

    def _renew(self, plan: Plan) -> float | None:
        try:
            grant = self._client.renew_self(int(plan.wanted_ttl_s))
        except UnreachableError as exc:
            log.warning("could not renew the token (%s); retrying", exc)
            with self._lock:
                self._schedule.action_failed(TOKEN_KEY, now=self._clock())
            return None
        except InjectError as exc:
            return self._relogin(reason=f"token renewal failed ({exc})")
        with self._lock:
            now = self._clock()
            self._schedule.renewed(TOKEN_KEY, now=now, granted_ttl_s=grant.ttl_s, renewable=grant.renewable)
            self.expires_at = now + grant.ttl_s
        log.debug("renewed token for %ds", grant.ttl_s)
        return None

    def _relogin(self, *, reason: str) -> float | None:
        if not self._auth.can_relogin:
            log.warning("%s and there is no way to log in again; keep the token fresh from outside", reason)
            with self._lock:
                self._schedule.plan(TOKEN_KEY, None)
            return None
        try:
            grant = self._auth.login(self._client)
        except InjectError as exc:
            log.error("login failed (%s); retrying", exc)
            with self._lock:
                self._schedule.action_failed(TOKEN_KEY, now=self._clock())
            return None
        self._foreground.set_token(self._client.token)
        log.info("%s; logged in again", reason)
        with self._lock:
            old_expires_at = self.expires_at
            self.plan(grant)
        return old_expires_at
