"""Leases, certificates and inject's own token over time.

Keeps one plan per leased secret or certificate (see ``leases``), renews what is due,
and hands back the secrets that must be re-read. Renews inject's token while it can
be extended and logs in again when not; a new token does not re-fetch secrets that
are still valid, only leases that died with the old token. Revokes every lease it
saw when inject exits (unless told to keep them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from ..client import Plan, backoff, leases
from ..errors import InjectError, UnreachableError
from ..model import PkiIssue, Request, Secret, SecretWrite
from ..observe import Expiry

if TYPE_CHECKING:  # annotations only: importing the client loads hvac and requests
    from ..client import Login, VaultClient

log = logging.getLogger(__name__)

REVOKE_TIMEOUT_S = 5.0


class Relogin(Protocol):
    """Something that can put a fresh token on a client (auth.Authenticator)."""

    @property
    def can_relogin(self) -> bool: ...

    @property
    def owns_token(self) -> bool: ...

    def login(self, client: VaultClient) -> Login: ...


class Lifecycle:
    """Timers and actions for leases, certificates and the token."""

    def __init__(
        self,
        client: VaultClient,
        *,
        authenticator: Relogin | None,
        grant: Login | None,
        on_new_token: Callable[[str], None],
        reread_threshold: float = leases.REREAD_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._auth = authenticator
        self._on_new_token = on_new_token
        self._threshold = reread_threshold
        self._clock = clock
        self._wall = wall_clock
        self.plans: dict[Request, Plan] = {}
        self.issued_leases: dict[str, float] = {}  # lease id -> when it ends (monotonic)
        self._issued_by: dict[str, int] = {}  # lease id -> the login (generation) that issued it
        self._token_plan: Plan | None = None
        self._token_expires_at: float | None = None
        self._token_ttl_s = 0.0  # as last granted (the plan's is 0 after a failed login)
        self._generation = 0  # bumped at every new login
        self._lease_generation: dict[Request, int] = {}
        self._retries: dict[str, int] = {}
        if grant is not None:
            self._plan_token(grant)

    @property
    def token(self) -> str:
        """The token in use now (after any re-login)."""
        return self._client.token

    # --- planning ---------------------------------------------------------------------

    def track(self, secrets: Mapping[Request, Secret]) -> None:
        """Plan renewal or re-read for every leased secret and certificate in ``secrets``."""
        now = self._clock()
        self._prune_ended(now)
        for key, secret in secrets.items():
            plan = self._plan_for(secret, now)
            if plan is None:
                self.plans.pop(key, None)
                continue
            if secret.lease_id and secret.lease_id not in self.issued_leases:
                ttl_s = secret.lease_duration_s
                self.issued_leases[secret.lease_id] = now + ttl_s if ttl_s > 0 else math.inf
                self._issued_by[secret.lease_id] = self._generation
            self.plans[key] = plan
            self._lease_generation[key] = self._generation

    def _prune_ended(self, now: float) -> None:
        """Forget leases that have ended by themselves: nothing left to revoke, and a long run
        that re-reads credentials every hour must not keep every id it ever saw."""
        for lease_id, ends_at in list(self.issued_leases.items()):
            if ends_at < now:
                del self.issued_leases[lease_id]
                self._issued_by.pop(lease_id, None)

    def _plan_for(self, secret: Secret, now: float) -> Plan | None:
        if secret.expires_at and secret.issued_at:
            return leases.for_certificate(
                now=now, wall_now=self._wall(), issued_at=secret.issued_at, expires_at=secret.expires_at
            )
        return leases.after_read(
            now=now,
            lease_id=secret.lease_id,
            ttl_s=secret.lease_duration_s,
            renewable=secret.renewable,
            reread_threshold=self._threshold,
        )

    def _plan_token(self, grant: Login) -> None:
        now = self._clock()
        self._token_plan = leases.after_read(
            now=now, lease_id="token", ttl_s=grant.ttl_s, renewable=grant.renewable
        )
        self._token_expires_at = now + grant.ttl_s if grant.ttl_s > 0 else None
        self._token_ttl_s = float(grant.ttl_s)

    def next_at(self) -> float | None:
        """When the next renewal or re-read is due."""
        times = [plan.at for plan in self.plans.values()]
        if self._token_plan is not None:
            times.append(self._token_plan.at)
        return min(times) if times else None

    def expiries(self) -> list[Expiry]:
        """When each lease, certificate and the token end unless renewed or re-read."""
        found = [
            Expiry(_kind(key, plan), _what(key), plan.expires_at, plan.ttl_s)
            for key, plan in self.plans.items()
            if plan.expires_at is not None
        ]
        if self._token_expires_at is not None:
            found.append(Expiry("token", "inject's token", self._token_expires_at, self._token_ttl_s))
        return found

    # --- acting -------------------------------------------------------------------------

    def run_due(self) -> list[Request]:
        """Renew what is due now; return the keys that must be re-read."""
        now = self._clock()
        if self._token_plan is not None and self._token_plan.at <= now:
            self._token_due(now)
        rereads = []
        for key, plan in list(self.plans.items()):
            if plan.at > now:
                continue
            if plan.action == "renew":
                self._renew(key, plan, now)
            else:
                rereads.append(key)
        return rereads

    def postpone(self, key: Request, attempt: int) -> None:
        """A re-read could not be done now (server down): try again after a backoff."""
        plan = self.plans.get(key)
        if plan is not None:
            delay = backoff.delay_s(attempt, initial_s=1.0, max_s=30.0)
            self.plans[key] = plan.at_time(self._clock() + delay)

    def _renew(self, key: Request, plan: Plan, now: float) -> None:
        try:
            grant = self._client.renew_lease(plan.lease_id, int(plan.wanted_ttl_s))
        except UnreachableError:
            self._retry_later(key, plan)
            return
        except InjectError as exc:
            log.warning("lease %s could not be renewed (%s); reading %s again", plan.lease_id, exc, key.label)
            self.plans[key] = plan.at_time(now, "reread")
            return
        self._retries.pop(plan.lease_id, None)
        if plan.lease_id in self.issued_leases:
            self.issued_leases[plan.lease_id] = now + grant.ttl_s
        self.plans[key] = leases.after_renewal(
            plan, now=now, granted_ttl_s=grant.ttl_s, renewable=grant.renewable
        )
        if self.plans[key].action == "reread":
            log.info(
                "lease %s cannot be extended past %ds; new credentials before it expires",
                plan.lease_id,
                grant.ttl_s,
            )
        else:
            log.debug("renewed lease %s for %ds", plan.lease_id, grant.ttl_s)

    def _retry_later(self, key: Request, plan: Plan) -> None:
        attempt = self._retries.get(plan.lease_id, 0) + 1
        self._retries[plan.lease_id] = attempt
        self.postpone(key, attempt)

    def _token_due(self, now: float) -> None:
        plan = self._token_plan
        if plan is None:
            return
        if plan.action == "renew":
            try:
                grant = self._client.renew_self(int(plan.wanted_ttl_s))
            except UnreachableError:
                self._token_plan = plan.at_time(now + 5.0)
                return
            except InjectError as exc:
                log.warning("token renewal failed (%s)", exc)
            else:
                self._token_plan = leases.after_renewal(
                    plan, now=now, granted_ttl_s=grant.ttl_s, renewable=grant.renewable
                )
                self._token_expires_at = now + grant.ttl_s if grant.ttl_s > 0 else None
                self._token_ttl_s = float(grant.ttl_s)
                log.debug("renewed token for %ds", grant.ttl_s)
                return
        self.relogin(reason="token cannot be renewed further")

    def adopt(self, grant: Login, token: str) -> None:
        """Use ``token`` (got by another client: after a start from the state) from now on."""
        self._client.set_token(token)
        self._on_new_token(token)
        self._plan_token(grant)

    @property
    def can_relogin(self) -> bool:
        """True when a fresh token can be had without outside help."""
        return self._auth is not None and self._auth.can_relogin

    def relogin(self, *, reason: str) -> bool:
        """Get a new token; re-read only leases that died with the old one."""
        if self._auth is None or not self._auth.can_relogin:
            log.warning("%s and no way to log in again; keep the token fresh from outside", reason)
            self._token_plan = None
            return False
        try:
            grant = self._auth.login(self._client)
        except InjectError as exc:
            log.error("login failed (%s); retrying in 10s", exc)
            self._token_plan = Plan("reread", self._clock() + 10.0, 0, 0, "token")
            return False
        log.info("%s; logged in again", reason)
        old_expires_at = self._token_expires_at
        self._generation += 1
        self._on_new_token(self._client.token)
        self._plan_token(grant)
        self._replace_old_token_leases(old_expires_at)
        return True

    def _replace_old_token_leases(self, old_expires_at: float | None) -> None:
        """Leases die with the token that created them. Re-read those already dead now, and
        those the old token will take with it before it expires; all others stay as they are."""
        now = self._clock()
        for key, plan in list(self.plans.items()):
            if not plan.lease_id or self._lease_generation.get(key, 0) >= self._generation:
                continue
            if not self._client.lease_alive(plan.lease_id):
                log.info("lease %s ended with the old token; reading %s again", plan.lease_id, key.label)
                self.plans[key] = plan.at_time(now, "reread")
            elif old_expires_at is not None:
                due = now + max(0.0, old_expires_at - now) / 2
                log.info("lease %s ends with the old token; new credentials before then", plan.lease_id)
                self.plans[key] = plan.at_time(min(due, plan.at), "reread")

    def revoke_all(self) -> None:
        """Give back what this run holds (best effort: short timeout, and a server that does
        not answer is not asked about the rest): inject's own token, and with it its leases,
        when it logged in itself; otherwise every lease issued that has not ended."""
        from ..client import release

        self._prune_ended(self._clock())
        current = [i for i in self.issued_leases if self._issued_by.get(i, 0) == self._generation]
        earlier = [i for i in self.issued_leases if self._issued_by.get(i, 0) != self._generation]
        own = self._auth is not None and self._auth.owns_token
        release(self._client, current, own_token=own, earlier_leases=earlier, budget_s=REVOKE_TIMEOUT_S)
        self.issued_leases.clear()
        self._issued_by.clear()


def _kind(request: Request, plan: Plan) -> str:
    """A PKI certificate, an SSH certificate from a write (no lease), or a lease."""
    certificate = isinstance(request, PkiIssue) or (isinstance(request, SecretWrite) and not plan.lease_id)
    return "certificate" if certificate else "lease"


def _what(request: Request) -> str:
    """The configured path (a certificate's role path or a write's path, without their
    parameters); a path a template computed is not named (see ``model.computed_in_template``)."""
    with_params = isinstance(request, PkiIssue | SecretWrite)
    return request.path if with_params and not request.computed else request.label
