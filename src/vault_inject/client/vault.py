"""The Vault operations, as hvac's API calls (KV v1/v2 with mount detection, leases, PKI,
transit, token and logins), and hvac's exceptions translated into ours (``translate.py``).

Every request goes through inject's hvac adapter (``adapter.py``: retries, deadlines,
failover, redirects). Results become our own dataclasses, so ``Any`` stops here. Every
operation takes an optional ``budget_s``: how long that one call may keep retrying (all its
requests share it, e.g. a mount lookup and the read after it); ``None`` is the client's
``retry_timeout_s``, and ``0`` is one attempt with the full request timeout.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import hvac
from hvac import exceptions as hvac_errors

from ..errors import AuthError, PermissionDenied, SecretError, SecretNotFound, UsageError
from ..fanout import fan_out
from ..log import register_secret, replace_secrets
from ..model import (
    COMPUTED_PATH,
    READ_WORKERS,
    KvRead,
    PkiIssue,
    Request,
    Secret,
    TokenInfo,
    TransitDecrypt,
    quoted,
    request_order,
    strings_in,
)
from ..refs import normalize_path
from .adapter import InjectAdapter, ServerSettings, WireFactory
from .failover import Failover
from .translate import NoRoute, translated

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["LeaseRenewal", "Login", "Secret", "ServerSettings", "VaultClient", "server_settings"]

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "https://127.0.0.1:8200"
_PATH_SAFE = "/-_.~@:"  # a path's characters sent as they are; '?' and '#' never


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


@dataclass(frozen=True)
class LeaseRenewal:
    """What the server granted for a lease renewal."""

    lease_id: str
    ttl_s: int
    renewable: bool


@dataclass(frozen=True)
class _Mount:
    path: str  # with trailing slash, e.g. "secret/"
    kv_version: int | None  # 1 or 2 for KV, None for any other engine

    @property
    def name(self) -> str:
        """The mount point as hvac's ``mount_point`` takes it (``secret``)."""
        return self.path.rstrip("/")

    def rest(self, logical: str) -> str:
        """``logical`` below the mount (KV v2's ``data/`` taken off)."""
        return (
            logical[len(self.path) :].removeprefix("data/")
            if self.kv_version == 2
            else logical[len(self.path) :]
        )


class VaultClient:
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
        self._kv = _KV(self)

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
    def _call(self, what: str, budget_s: float | None, since: float | None = None) -> Iterator[None]:
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
            with self._call("token lookup", budget_s):
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
        data = _dict(_dict(body).get("data"))
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
        jwt) at ``auth/<mount>/login``; the client uses the new token from then on.
        (POST /auth/<mount>/login)"""
        mount = normalize_path(mount)
        try:
            with self._call(what, budget_s):
                body = _dict(self._login(method, mount, credentials))
        except (PermissionDenied, AuthError, SecretNotFound) as exc:
            raise AuthError(f"{what} refused by {self.address}: {_kind(exc)}") from None
        except SecretError as exc:
            raise AuthError(f"{what} refused: {exc}") from None
        auth = _dict(body.get("auth"))
        token = str(auth.get("client_token") or "")
        if not token:
            raise AuthError(f"{what}: the server returned no token")
        self.set_token(token)
        self.policies = tuple(str(p) for p in auth.get("policies") or ())
        return Login(
            token=token, ttl_s=int(auth.get("lease_duration") or 0), renewable=bool(auth.get("renewable"))
        )

    def _login(self, method: str, mount: str, credentials: Mapping[str, str]) -> Any:
        # use_token=False: the token is checked (and then set) by login() above.
        auth = self.hvac.auth
        if method == "approle":
            return auth.approle.login(
                credentials["role_id"], credentials["secret_id"], use_token=False, mount_point=mount
            )
        if method == "jwt":
            return auth.jwt.jwt_login(credentials["role"], credentials["jwt"], use_token=False, path=mount)
        if method == "kubernetes":
            return auth.kubernetes.login(
                credentials["role"], credentials["jwt"], use_token=False, mount_point=mount
            )
        raise UsageError(f"unknown auth method {method!r}")

    def renew_self(self, increment_s: int | None = None, *, budget_s: float | None = None) -> Login:
        """Renew inject's own token; AuthError when it cannot be renewed.
        (POST /auth/token/renew-self)"""
        try:
            with self._call("token renewal", budget_s):
                body = self.hvac.auth.token.renew_self(increment=f"{increment_s}s" if increment_s else None)
        except SecretError as exc:
            raise AuthError(f"token renewal refused: {_kind(exc)}") from None
        auth = _dict(_dict(body).get("auth"))
        return Login(
            token=self.token,
            ttl_s=int(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    def revoke_self(self, *, budget_s: float | None = None) -> None:
        """Revoke inject's own token, and with it every lease it created (the default policy
        allows it; no ``sys/leases/revoke`` grant needed). (POST /auth/token/revoke-self)"""
        with self._call("revocation of inject's token", budget_s):
            self.hvac.auth.token.revoke_self()

    # --- leases --------------------------------------------------------------------------

    def renew_lease(self, lease_id: str, increment_s: int, *, budget_s: float | None = None) -> LeaseRenewal:
        """Ask for ``increment_s`` more seconds on a lease; the server may grant less.
        (PUT /sys/leases/renew)"""
        with self._call(f"renewal of lease {lease_id}", budget_s):
            body = _dict(self.hvac.sys.renew_lease(lease_id, increment=increment_s))
        return LeaseRenewal(
            lease_id=str(body.get("lease_id") or lease_id),
            ttl_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
        )

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        """Revoke a lease now (the credentials stop working). (PUT /sys/leases/revoke)"""
        with self._call(f"revocation of lease {lease_id}", budget_s):
            self.hvac.sys.revoke_lease(lease_id)

    def lease_alive(self, lease_id: str, *, budget_s: float | None = None) -> bool:
        """True while the server still knows the lease. (PUT /sys/leases/lookup)"""
        try:
            with self._call(f"lookup of lease {lease_id}", budget_s):
                self.hvac.sys.read_lease(lease_id)
        except PermissionDenied:
            return True  # cannot tell; a failing renewal will say so later
        except SecretError:
            return False
        return True

    def lease_ttl(self, lease_id: str, *, budget_s: float | None = None) -> int | None:
        """The seconds a lease has left, or None when the server does not know it (revoked,
        expired) or will not say. (PUT /sys/leases/lookup)"""
        try:
            with self._call(f"lookup of lease {lease_id}", budget_s):
                body = _dict(self.hvac.sys.read_lease(lease_id))
        except SecretError:
            return None
        ttl = _int_or_none(_dict(body.get("data")).get("ttl"))
        return ttl if ttl is not None and ttl > 0 else None

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
            if isinstance(request, KvRead):
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
        logical = normalize_path(path)
        with self._call(f"'{logical}'", budget_s):
            body = _dict(self.hvac.write_data(_url_path(logical), data=dict(params)))
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"'{logical}' returned no data")
        _register_values(data, owner=("write", logical))
        return _leased(logical, data, body)

    def kv_put(self, path: str, data: Mapping[str, Any], *, budget_s: float | None = None) -> None:
        """Write ``data`` at ``path`` (a new version on KV v2); used by ``inject dev`` seeding."""
        self._kv.put(normalize_path(path), data, budget_s)

    def _fetch(self, request: Request, budget_s: float | None, since: float | None) -> Secret:
        if isinstance(request, PkiIssue):
            with self._call(f"certificate from {quoted(request)}", budget_s, since):
                return self._issue(request)
        if isinstance(request, TransitDecrypt):
            with self._call(f"decryption with {quoted(request)}", budget_s, since):
                return self._decrypt(request)
        secret = self._kv.read(request.path, request.version, budget_s, since, quoted(request))
        _register_values(secret.data, owner=request)
        log.debug("read %s %s", request.label, secret.describe)
        return secret

    def _issue(self, request: PkiIssue) -> Secret:
        """One certificate. (POST /<mount>/issue/<role>)"""
        mount, _, role = request.path.partition("/issue/")
        params = {name: value for name, value in request.params if value}  # an empty value: as if not given
        common_name = params.pop("common_name", "")
        body = _dict(
            self.hvac.secrets.pki.generate_certificate(
                role, common_name, extra_params=params, mount_point=mount
            )
        )
        data = body.get("data")
        if not isinstance(data, dict) or "certificate" not in data:
            raise SecretNotFound(f"{quoted(request)} returned no certificate")
        _register_values({"private_key": data.get("private_key", "")}, owner=request)
        log.debug("issued certificate %s from %s", data.get("serial_number", "?"), quoted(request))
        return Secret(
            path=request.path,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            expires_at=float(data.get("expiration") or 0) or None,
            issued_at=time.time(),
        )

    def _decrypt(self, request: TransitDecrypt) -> Secret:
        """One plaintext. (POST /<mount>/decrypt/<key>)"""
        mount, _, key = request.path.partition("/decrypt/")
        body = _dict(
            self.hvac.secrets.transit.decrypt_data(key, ciphertext=request.ciphertext, mount_point=mount)
        )
        encoded = str(_dict(body.get("data")).get("plaintext") or "")
        try:
            plaintext = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretError(f"decryption with {quoted(request)} did not return UTF-8 text") from None
        register_secret(plaintext)
        return Secret(path=request.path, data={"plaintext": plaintext})


class _KV:
    """KV v1/v2 (and other engines' plain reads), with the mounts learnt so far."""

    def __init__(self, client: VaultClient) -> None:
        self._client = client
        self.mounts: dict[str, _Mount] = {}

    def read(
        self, logical: str, version: int | None, budget_s: float | None, since: float | None, shown: str = ""
    ) -> Secret:
        """The secret at ``logical`` (KV v2 ``data/`` added), at ``version`` if given;
        messages name it ``shown`` (default: ``logical`` quoted; a path computed in a
        template is not named)."""
        shown = shown or f"'{logical}'"
        mount = self.mount_for(logical, budget_s, since, shown)
        try:
            with self._client._call(shown, budget_s, since):
                if mount is not None and mount.kv_version == 2:
                    return self._read_kv2(logical, mount, version, shown)
                if version is not None:
                    raise UsageError(f"{shown}: a version was asked for, but it is not a KV v2 secret")
                return self._read_plain(logical, mount, shown)
        except NoRoute:
            # The mount was disabled (or never there). The mount stays remembered: looking it
            # up again would only get a misleading 403 ("preflight capability check"). A
            # computed path's mount is part of it: not named either.
            where = f"at '{mount.path}'" if mount is not None and shown == f"'{logical}'" else "there"
            raise SecretNotFound(f"{shown}: no secrets engine is mounted {where}") from None

    def put(self, logical: str, data: Mapping[str, Any], budget_s: float | None) -> None:
        """Write ``data`` at ``logical`` (a new version on KV v2). (POST /<mount>/data/<path>
        or /<path>)"""
        since = self._client.clock()  # one budget: mount lookup and write
        mount = self.mount_for(logical, budget_s, since)
        with self._client._call(f"'{logical}'", budget_s, since):
            if mount is not None and mount.kv_version == 2:
                kv2 = self._client.hvac.secrets.kv.v2
                kv2.create_or_update_secret(mount.rest(logical), dict(data), mount_point=mount.name)
            else:
                self._client.hvac.write_data(_url_path(logical), data=dict(data))

    def _read_kv2(self, logical: str, mount: _Mount, version: int | None, shown: str) -> Secret:
        """(GET /<mount>/data/<path>?version=N)"""
        kv2 = self._client.hvac.secrets.kv.v2
        try:
            body = _dict(
                kv2.read_secret_version(
                    mount.rest(logical),
                    version=version,
                    mount_point=mount.name,
                    # raised, not returned: the metadata is read below (hvac's own look at a
                    # 404 body indexes into it and fails on {"data": null} with a TypeError)
                    raise_on_deleted_version=True,
                )
            )
        except hvac_errors.InvalidPath as exc:  # a deleted or destroyed version: 404 with its metadata
            metadata = _dict(_dict(_dict(exc.json).get("data")).get("metadata"))
            if not metadata:
                raise
            raise SecretNotFound(_kv2_missing_message(shown, version, metadata)) from None
        inner = _dict(body.get("data"))
        metadata = _dict(inner.get("metadata"))
        data = inner.get("data")
        if data is None:
            raise SecretNotFound(_kv2_missing_message(shown, version, metadata))
        return Secret(
            path=logical,
            data=data,
            version=_int_or_none(metadata.get("version")),
            created_time=metadata.get("created_time"),
            kv_version=2,
        )

    def _read_plain(self, logical: str, mount: _Mount | None, shown: str) -> Secret:
        """KV v1 or any other engine's read. (GET /<path>)"""
        if mount is not None and mount.kv_version == 1:
            kv1 = self._client.hvac.secrets.kv.v1
            body = _dict(kv1.read_secret(mount.rest(logical), mount_point=mount.name))
        else:
            # The adapter's own GET: hvac's Client.read turns every 404 into None, which
            # would hide "no handler for route" (NoRoute: nothing mounted there).
            body = _dict(self._client.hvac.adapter.get(f"/v1/{_url_path(logical)}"))
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"no secret at {shown}")
        return _leased(logical, data, body, kv_version=mount.kv_version if mount else None)

    def mount_for(
        self, logical: str, budget_s: float | None, since: float | None, shown: str = ""
    ) -> _Mount | None:
        """The mount ``logical`` (named ``shown`` in messages) lives under (looked up once
        per mount); None if unknown."""
        for mount_path, mount in self.mounts.items():
            if (logical + "/").startswith(mount_path):
                return mount
        found = self._lookup_mount(logical, budget_s, since, shown or f"'{logical}'")
        if found is not None:
            self.mounts[found.path] = found
        return found

    def _lookup_mount(
        self, logical: str, budget_s: float | None, since: float | None, shown: str
    ) -> _Mount | None:
        """(GET /sys/internal/ui/mounts/<path>) hvac has no call for this endpoint (the one
        the Vault CLI uses to find a path's mount and KV version): the adapter's own."""
        try:
            with self._client._call(f"{shown} (mount lookup)", budget_s, since):
                body = self._client.hvac.adapter.get(f"/v1/sys/internal/ui/mounts/{_url_path(logical)}")
        except PermissionDenied:
            raise PermissionDenied(f"permission denied reading {shown}") from None
        except SecretError:
            return None
        data = _dict(_dict(body).get("data"))
        mount_path = str(data.get("path") or "")
        if not mount_path:
            return None
        kv_version = None
        if data.get("type") in ("kv", "generic"):
            options = _dict(data.get("options"))
            kv_version = 2 if str(options.get("version", "1")) == "2" else 1
        return _Mount(
            path=mount_path if mount_path.endswith("/") else mount_path + "/", kv_version=kv_version
        )


def _url_path(logical: str) -> str:
    """``logical`` as a URL path: characters that would end the path ('?', '#') escaped."""
    return quote(logical, safe=_PATH_SAFE)


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else {} (hvac hands back what the server said)."""
    return value if isinstance(value, dict) else {}


def _leased(
    logical: str, data: dict[str, Any], body: Mapping[str, Any], *, kv_version: int | None = None
) -> Secret:
    return Secret(
        path=logical,
        data=data,
        lease_id=str(body.get("lease_id") or ""),
        lease_duration_s=int(body.get("lease_duration") or 0),
        renewable=bool(body.get("renewable")),
        kv_version=kv_version,
    )


def _kv2_missing_message(shown: str, version: int | None, metadata: Mapping[str, Any]) -> str:
    # a computed path's version may be computed too: neither is shown
    which = f"version {version} of {shown}" if version is not None and shown != COMPUTED_PATH else shown
    if metadata.get("destroyed"):
        return f"{which} was destroyed"
    if metadata.get("deletion_time"):
        return f"{which} was deleted"
    return f"no secret at {which}"


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _register_values(data: Mapping[str, Any], *, owner: Hashable) -> None:
    """Mask every string in ``data`` (lists too: a KV value may be a JSON array). Values are
    kept per owner (the request made): a re-read replaces them, so a long run's set stays the
    size of what is in use; a value another owner still holds stays masked."""
    replace_secrets(owner, strings_in(data))


def _kind(exc: Exception) -> str:
    if isinstance(exc, PermissionDenied):
        return "permission denied"
    if isinstance(exc, SecretNotFound):
        return "no such auth mount or role"
    return "rejected"
