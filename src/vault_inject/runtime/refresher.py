"""The one background thread of a ``Secrets``: polls, lease renewals and re-reads (and the
token, through ``keeper.TokenKeeper``).

It asks ``plan.Schedule`` what is due, does the request on its own client (so a
slow server never blocks a caller's ``get`` of a cached path), records the outcome back
in the schedule and calls the app's callbacks. A failing request or callback is logged
(never with a value) and retried later; nothing stops the thread but ``close()``.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..client import Plan, VaultClient, release
from ..errors import InjectError, SecretNotFound, UnreachableError, UsageError
from ..model import PkiIssue, Secret
from ..refs import normalize_path
from . import plan as runtime_plan
from .cache import Callback, Lease, SecretCache
from .connect import Connection
from .keeper import TokenKeeper
from .plan import TOKEN_KEY, Schedule

log = logging.getLogger(__name__)

BACKGROUND_RETRY_S = 5.0  # one background request's retry budget; the schedule retries after it
REVOKE_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = BACKGROUND_RETRY_S + 5.0


def read_unleased(client: VaultClient, logical: str, version: int | None) -> Secret:
    """Read a KV (or other unleased) secret; a leased one is revoked at once and refused."""
    try:
        secret = client.read(logical, version)
    except SecretNotFound as exc:
        if version is None or "version" in str(exc):
            raise
        raise SecretNotFound(f"{exc} (version {version})") from exc  # say which was asked for
    if secret.lease_id:
        _revoke_quietly(client, secret.lease_id)
        raise UsageError(f"'{logical}' is a leased secret: use Secrets.lease('{logical}')")
    return secret


def read_leased(client: VaultClient, path: str, params: Mapping[str, Any]) -> Secret:
    """Read (GET) or issue (POST with ``params``) a leased secret or a PKI certificate."""
    logical = normalize_path(path)
    if params and "/issue/" in f"/{logical}/":
        secret = client.fetch(PkiIssue.of(logical, params))
    elif params:
        secret = client.write(logical, params)
    else:
        secret = client.read(logical)
    if not secret.lease_id and not secret.expires_at:
        raise UsageError(f"'{logical}' gave no lease: use Secrets.get('{logical}') for KV secrets")
    return secret


def _revoke_quietly(client: VaultClient, lease_id: str) -> None:
    try:
        client.revoke_lease(lease_id)
    except InjectError as exc:
        log.warning("could not revoke lease %s: %s", lease_id, exc)


class Refresher:
    """Keeps one ``SecretCache`` and its leases fresh from a background thread."""

    def __init__(
        self,
        connection: Connection,
        cache: SecretCache,
        *,
        revoke_on_close: bool,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._foreground = connection.client
        self._client = connection.client.clone(retry_timeout_s=BACKGROUND_RETRY_S)
        self._cache = cache
        self._threshold = connection.config.reread_threshold
        self._revoke = revoke_on_close
        self._clock, self._wall = clock, wall_clock
        self._cond = threading.Condition()
        self._schedule = Schedule(connection.config.poll_interval_s)
        self._leases: list[Lease] = []
        self._issued: dict[str, float] = {}  # lease id -> wall-clock expiry, for revocation
        self._earlier: set[str] = set()  # of those, the ones an earlier token issued
        self._own_token = connection.authenticator.owns_token
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="vault-inject-refresh", daemon=True)
        self._token = TokenKeeper(
            client=self._client,
            foreground=self._foreground,
            authenticator=connection.authenticator,
            schedule=self._schedule,
            lock=self._cond,
            clock=clock,
        )
        self._token.plan(connection.grant)

    # --- from the caller's threads ------------------------------------------------

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def watch(self, path: str) -> None:
        """Poll ``path`` from now on."""
        with self._cond:
            self._schedule.watch(path, now=self._clock())
            self._cond.notify()

    def track(self, path: str, params: Mapping[str, Any], secret: Secret) -> Lease:
        """Keep a freshly read lease valid; return the app's handle on it."""
        lease = Lease(path, params, secret, expires_at=self._expiry(secret))
        with self._cond:
            self._leases.append(lease)
            self._note_issued(secret)
            self._schedule.plan(lease, self._plan_for(secret))
            self._cond.notify()
        return lease

    def close(self) -> None:
        """Stop the thread (waiting for a request in flight), then revoke issued leases."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
        if self._revoke:
            self._revoke_all()
        self._client.close()
        self._foreground.close()

    # --- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                wait_s = self._schedule.wait_s(now=self._clock())
                if wait_s > 0:
                    self._cond.wait(wait_s)
                    continue
                now = self._clock()
                plans, polls = self._schedule.due_plans(now=now), self._schedule.due_polls(now=now)
            for key, plan in plans:
                self._guarded(key, functools.partial(self._act, key, plan))
            for path in polls:
                self._guarded(path, functools.partial(self._poll, path))

    def _guarded(self, key: Hashable, action: Callable[[], None]) -> None:
        """Run one action; an unexpected failure is logged and retried, never kills the thread."""
        try:
            action()
        except Exception as exc:  # the thread must survive anything; no message: it may quote data
            log.error("background refresh of %s failed unexpectedly (%s)", _name(key), type(exc).__name__)
            with self._cond:
                if isinstance(key, str) and key != TOKEN_KEY:
                    self._schedule.poll_failed(key, now=self._clock())
                elif key in self._schedule.plans:
                    self._schedule.action_failed(key, now=self._clock())

    def _poll(self, path: str) -> None:
        try:
            secret = self._client.read(path)
        except InjectError as exc:
            log.warning("could not poll %s (%s); serving the cached version", path, exc)
            with self._cond:
                self._schedule.poll_failed(path, now=self._clock())
            return
        with self._cond:
            self._schedule.polled(path, now=self._clock())
        callbacks = self._cache.polled(path, secret)
        if callbacks:
            log.info("new version of %s (%s)", path, secret.describe)
            _notify(path, callbacks, secret.data)

    def _act(self, key: Hashable, plan: Plan) -> None:
        if not isinstance(key, Lease):
            old_token_ends_at = self._token.due(plan)
            if old_token_ends_at is not None:
                self._replace_old_token_leases(old_token_ends_at)
        elif plan.action == "renew":
            self._renew(key, plan)
        else:
            self._reread(key)

    # --- leases -------------------------------------------------------------------

    def _renew(self, lease: Lease, plan: Plan) -> None:
        try:
            grant = self._client.renew_lease(plan.lease_id, int(plan.wanted_ttl_s))
        except UnreachableError as exc:
            log.warning("could not renew lease %s (%s); retrying", plan.lease_id, exc)
            with self._cond:
                self._schedule.action_failed(lease, now=self._clock())
            return
        except InjectError as exc:
            log.warning("lease %s not renewed (%s); reading %s again", plan.lease_id, exc, lease.path)
            with self._cond:
                self._schedule.reread_now(lease, now=self._clock())
            return
        lease.extended(expires_at=self._wall() + grant.ttl_s)
        with self._cond:
            self._issued[plan.lease_id] = self._wall() + grant.ttl_s
            new = self._schedule.renewed(
                lease, now=self._clock(), granted_ttl_s=grant.ttl_s, renewable=grant.renewable
            )
        if new.action == "reread":
            log.info("lease %s ends in %ds; new credentials before then", plan.lease_id, grant.ttl_s)
        else:
            log.debug("renewed lease %s for %ds", plan.lease_id, grant.ttl_s)

    def _reread(self, lease: Lease) -> None:
        try:
            secret = read_leased(self._client, lease.path, lease.params)
        except InjectError as exc:
            log.warning("could not read %s again (%s); retrying", lease.path, exc)
            with self._cond:
                self._schedule.action_failed(lease, now=self._clock())
            return
        with self._cond:
            self._note_issued(secret)
            self._schedule.plan(lease, self._plan_for(secret))
        log.info("new credentials from %s (%s)", lease.path, secret.describe)
        _notify(lease.path, lease.replaced(secret, expires_at=self._expiry(secret)), secret.data)

    def _plan_for(self, secret: Secret) -> Plan | None:
        return runtime_plan.lease_plan(
            secret, now=self._clock(), wall_now=self._wall(), reread_threshold=self._threshold
        )

    def _expiry(self, secret: Secret) -> float:
        return secret.expires_at or self._wall() + secret.lease_duration_s

    def _note_issued(self, secret: Secret) -> None:
        if secret.lease_id:
            self._issued[secret.lease_id] = self._expiry(secret)

    def _revoke_all(self) -> None:
        client = self._foreground.clone(retry_timeout_s=REVOKE_TIMEOUT_S)
        try:
            alive = [lease_id for lease_id, expires_at in self._issued.items() if expires_at > self._wall()]
            release(
                client,
                [lease_id for lease_id in alive if lease_id not in self._earlier],
                own_token=self._own_token,
                earlier_leases=[lease_id for lease_id in alive if lease_id in self._earlier],
                budget_s=REVOKE_TIMEOUT_S,
            )
            self._issued.clear()
        finally:
            client.close()

    # --- the token's leases -------------------------------------------------------

    def _replace_old_token_leases(self, old_expires_at: float) -> None:
        """Leases end with the token that made them: new credentials before the old token ends."""
        with self._cond:
            self._earlier.update(self._issued)
            now = self._clock()
            for lease in self._leases:
                if lease in self._schedule.plans:
                    self._schedule.reread_by(lease, at=now + max(0.0, old_expires_at - now) / 2)


def _notify(what: str, callbacks: list[Callback], data: Mapping[str, Any]) -> None:
    for callback in callbacks:
        try:
            callback(copy.deepcopy(dict(data)))  # each callback its own copy
        except Exception as exc:  # the app's bug must not stop the refresh; its text may hold a value
            log.error("on_change callback for %s raised %s", what, type(exc).__name__)


def _name(key: Hashable) -> str:
    return key if isinstance(key, str) else str(getattr(key, "path", key))
