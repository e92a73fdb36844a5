"""The Vault operations, as hvac's API calls (KV v1/v2 with mount detection, leases, PKI,
transit, token and logins), and hvac's exceptions translated into ours (``translate.py``).

Every request goes through inject's hvac adapter (``adapter.py``: retries, deadlines,
failover, redirects). Results become our own dataclasses, so ``Any`` stops here. Every
operation takes an optional ``budget_s``: how long that one call may keep retrying (all its
requests share it, e.g. a mount lookup and the read after it); ``None`` is the client's
``retry_timeout_s``, and ``0`` is one attempt with the full request timeout.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hvac
from hvac import exceptions as hvac_errors

from ..errors import AuthError, PermissionDenied, SecretError, SecretNotFound, UsageError
from ..fanout import fan_out
from ..model import (
    READ_WORKERS,
    KvList,
    KvRead,
    PkiIssue,
    Request,
    Secret,
    SecretWrite,
    TokenInfo,
    TransitDecrypt,
    quoted,
    request_order,
)
from ..refs import normalize_path
from . import engines, logins
from .adapter import InjectAdapter, ServerSettings, WireFactory
from .answers import dict_of, register_values
from .failover import Failover
from .kv import KV
from .leasecalls import LeaseCalls, LeaseRenewal
from .translate import Refused, translated

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["LeaseRenewal", "Login", "Secret", "ServerSettings", "VaultClient", "server_settings"]

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "https://127.0.0.1:8200"


def server_settings(config: Config) -> ServerSettings:
    """How to reach the server ``config`` names (the CLI and the library alike)."""
    return ServerSettings(
        address=config.address or DEFAULT_ADDRESS,
        addresses=config.addresses,  # an HA cluster's nodes: failover in this order
        namespace=config.namespace,
        ca_cert=config.ca_cert,
        client_cert=config.client_cert,
        client_key=config.client_key,
        tls_skip_verify=config.tls_skip_verify,
    )


@dataclass(frozen=True)
class Login:
    """A token obtained by login or renewal, with its time to live."""

    token: str
    ttl_s: int
    renewable: bool


class VaultClient(LeaseCalls):
    """A token-authenticated hvac client for one server (or an HA cluster's address list,
    with failover: the token and the mounts learnt carry over, as it is one cluster): the
    Vault operations, each with an optional per-call retry budget (``budget_s``; default
    ``retry_timeout_s``). The command line and the library (``Secrets``) both use it."""

    def __init__(
        self,
        settings: ServerSettings,
        token: str,
        *,
        retry_timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wire_for: WireFactory | None = None,
        failover: Failover | None = None,
    ) -> None:
        """``wire_for``: the test seam of the adapter (fake servers); ``failover``: shared
        with the client this one is a clone of."""
        self.settings = settings
        self.retry_timeout_s = retry_timeout_s  # the default budget of every call
        self.sleep = sleep
        self.clock = clock
        self.policies: tuple[str, ...] = ()
        # The URL, TLS and timeout settings are the adapter's (from ``settings``); verify is
        # given so that hvac does not look for VAULT_CACERT itself.
        self.hvac = hvac.Client(
            url=settings.address,
            token=token,
            verify=True,
            adapter=InjectAdapter,
            settings=settings,
            sleep=sleep,
            clock=clock,
            wire_for=wire_for,
            failover=failover,
        )
        self._adapter: InjectAdapter = self.hvac.adapter
        self._kv = KV(self)

    @property
    def token(self) -> str:
        """The token sent with every request."""
        return self._adapter.token

    @property
    def address(self) -> str:
        """The server address in use now (with an address list: where failover moved)."""
        return self._adapter.address

    def close(self) -> None:
        """Close the keep-alive session."""
        self._adapter.close()

    def clone(self, *, retry_timeout_s: float) -> VaultClient:
        """A second client for another thread: its own session, the same token, policies,
        clocks, current address and mount knowledge, and its own default budget."""
        other = VaultClient(
            self.settings,
            self.token,
            retry_timeout_s=retry_timeout_s,
            sleep=self.sleep,
            clock=self.clock,
            wire_for=self._adapter.wire_for,
            failover=self._adapter.failover,
        )
        other.policies = self.policies
        other._kv.mounts.update(self._kv.mounts)
        return other

    def set_token(self, token: str) -> None:
        """Use a new token from now on (a token file changed, or a re-login)."""
        self.hvac.token = token

    @contextlib.contextmanager
    def call(self, what: str, budget_s: float | None, since: float | None = None) -> Iterator[None]:
        """The block's requests are ``what``, within the budget; hvac's exceptions become
        ours here, a permission error naming the token's policies."""
        budget = self.retry_timeout_s if budget_s is None else budget_s
        with self._adapter.operation(what, budget, since):
            try:
                yield
            except hvac_errors.VaultError as exc:
                error = translated(exc, what)
                if isinstance(error, PermissionDenied) and self.policies:
                    error = PermissionDenied(
                        f"{error} (token policies: {', '.join(self.policies)})",
                        token_rejected=error.token_rejected,
                    )
                raise error from None

    # --- auth ----------------------------------------------------------------------------

    def lookup_self(self, *, budget_s: float | None = None) -> TokenInfo:
        """Check the token works; what the server says about it. AuthError if rejected.
        (GET /auth/token/lookup-self)"""
        try:
            with self.call("token lookup", budget_s):
                body = self.hvac.auth.token.lookup_self()
        except PermissionDenied as exc:
            if not exc.token_rejected:
                # A valid token whose policies do not allow lookup-self (no `default` policy):
                # carry on without TTL information; reads will say what they may not do.
                log.debug("token lookup not permitted; token TTL unknown")
                return TokenInfo()
            raise self._rejected() from None
        except AuthError:
            raise self._rejected() from None
        data = dict_of(dict_of(body).get("data"))
        self.policies = tuple(str(p) for p in data.get("policies") or ())
        return TokenInfo(int(data.get("ttl") or 0), bool(data.get("renewable")), self.policies)

    def _rejected(self) -> AuthError:
        return AuthError(f"the token was rejected by {self.address} (invalid, expired or revoked)")

    def login(
        self,
        method: str,
        mount: str,
        credentials: Mapping[str, str],
        *,
        what: str,
        budget_s: float | None = None,
    ) -> Login:
        """Log in with ``method`` (approle: role_id and secret_id; jwt, kubernetes: role and
        jwt; userpass: username and password; cert: the TLS client certificate, and
        optionally the cert role) at ``auth/<mount>/login``; the client uses the new token
        from then on. (POST /auth/<mount>/login, userpass: /auth/<mount>/login/<username>)"""
        mount = normalize_path(mount)
        try:
            with self.call(what, budget_s):
                body = dict_of(logins.request(self.hvac.auth, self.settings, method, mount, credentials))
        except (PermissionDenied, AuthError, SecretNotFound) as exc:
            raise AuthError(f"{what} refused by {self.address}: {logins.refusal(exc)}") from None
        except Refused as exc:
            raise AuthError(f"{what} refused by {self.address}: {exc.reason}") from None
        except SecretError as exc:
            raise AuthError(f"{what} failed: {exc}") from None
        auth = dict_of(body.get("auth"))
        token = str(auth.get("client_token") or "")
        if not token:
            raise AuthError(f"{what}: the server returned no token")
        self.set_token(token)
        self.policies = tuple(str(p) for p in auth.get("policies") or ())
        return Login(
            token=token, ttl_s=int(auth.get("lease_duration") or 0), renewable=bool(auth.get("renewable"))
        )

    def unwrap(self, wrapping_token: str, *, what: str, budget_s: float | None = None) -> dict[str, Any]:
        """The data of the response wrapped in ``wrapping_token``, which this uses up
        (``logins.unwrap``). (POST /sys/wrapping/unwrap)"""
        return logins.unwrap(self, wrapping_token, what=what, budget_s=budget_s)

    def renew_self(self, increment_s: int | None = None, *, budget_s: float | None = None) -> Login:
        """Renew inject's own token; AuthError when it cannot be renewed.
        (POST /auth/token/renew-self)"""
        try:
            with self.call("token renewal", budget_s):
                body = self.hvac.auth.token.renew_self(increment=f"{increment_s}s" if increment_s else None)
        except SecretError as exc:
            raise AuthError(f"token renewal refused: {logins.refusal(exc)}") from None
        auth = dict_of(dict_of(body).get("auth"))
        return Login(
            token=self.token,
            ttl_s=int(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    def revoke_self(self, *, budget_s: float | None = None) -> None:
        """Revoke inject's own token, and with it every lease it created (the default policy
        allows it; no ``sys/leases/revoke`` grant needed). (POST /auth/token/revoke-self)"""
        with self.call("revocation of inject's token", budget_s):
            self.hvac.auth.token.revoke_self()

    # --- secrets -------------------------------------------------------------------------

    def read(self, path: str, version: int | None = None, *, budget_s: float | None = None) -> Secret:
        """Read ``path`` as a person types it (KV ``data/`` added for v2) and return a Secret."""
        return self.fetch(KvRead.of(path, version), budget_s=budget_s)

    def fetch(self, request: Request, *, budget_s: float | None = None) -> Secret:
        """Do one request: read a secret, issue a certificate or decrypt a ciphertext."""
        return self._fetch(request, budget_s, since=self.clock())  # one budget: mount lookup and read

    def read_many(
        self,
        requests: Iterable[Request],
        *,
        workers: int = READ_WORKERS,
        budget_s: float | None = None,
    ) -> dict[Request, Secret]:
        """Do many requests concurrently (daemon threads, one budget for all) over the
        keep-alive pool; return those that succeeded. Failures other than an outage
        are left for the caller to meet again in context."""
        since = self.clock()
        todo = sorted(set(requests), key=request_order)
        for request in todo:  # one mount lookup per mount, before the fan-out
            if isinstance(request, KvRead | KvList):
                with contextlib.suppress(SecretError):
                    self._kv.mount_for(request.path, budget_s, since, quoted(request))
        found: dict[Request, Secret] = {}

        def read_one(request: Request) -> None:
            # Other failures are met again by the render, which names the template and line.
            with contextlib.suppress(SecretError, UsageError):
                found[request] = self._fetch(request, budget_s, since)

        fan_out(todo, read_one, workers=workers, name="inject-read")
        return found

    def write(self, path: str, params: Mapping[str, Any], *, budget_s: float | None = None) -> Secret:
        """POST ``params`` to ``path`` for engines that issue on a write (``aws/sts/ROLE``,
        ``ssh/creds/ROLE``, ...) and return the answer as a Secret with its lease.
        (POST /<path>)"""
        secret = self.fetch(SecretWrite.of(path, params), budget_s=budget_s)
        if not secret.data:
            raise SecretNotFound(f"'{secret.path}' returned no data")
        return secret

    def kv_put(self, path: str, data: Mapping[str, Any], *, budget_s: float | None = None) -> None:
        """Write ``data`` at ``path`` (a new version on KV v2); used by ``inject dev`` seeding."""
        self._kv.put(normalize_path(path), data, budget_s)

    def _fetch(self, request: Request, budget_s: float | None, since: float | None) -> Secret:
        if isinstance(request, PkiIssue):
            with self.call(f"certificate from {quoted(request)}", budget_s, since):
                return engines.issue(self, request)
        if isinstance(request, TransitDecrypt):
            with self.call(f"decryption with {quoted(request)}", budget_s, since):
                return engines.decrypt(self, request)
        if isinstance(request, SecretWrite):
            with self.call(quoted(request), budget_s, since):
                return engines.write(self, request)
        if isinstance(request, KvList):
            listed = self._kv.list(request.path, budget_s, since, quoted(request))
            log.debug("listed %s: %d keys", request.label, len(listed))
            return Secret(path=request.path, data={}, listed=listed)
        secret = self._kv.read(request.path, request.version, budget_s, since, quoted(request))
        register_values(secret.data, owner=request)
        log.debug("read %s %s", request.label, secret.describe)
        return secret
