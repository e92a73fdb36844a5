"""The Vault operations (KV v1/v2 with mount detection, leases, PKI, transit, auth) on
top of the HTTP transport (``transport.py``: retries, deadlines, redirects, status mapping).

Results become our own dataclasses, so ``Any`` stops here. Every operation takes an
optional ``budget_s``: how long that one call may keep retrying (all its requests share
it, e.g. a mount lookup and the read after it); ``None`` is the client's
``retry_timeout_s``, and ``0`` is one attempt with the full request timeout.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

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
from .transport import NoRoute, ServerSettings, Transport, Wire, WireFactory

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


class _Send(Protocol):
    """One request of an operation, within the operation's budget."""

    def __call__(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        allow_404_body: bool = False,
    ) -> dict[str, Any]: ...


class _Sender:
    """The requests of one operation: one budget from its start, and the token's policies
    named in a permission error (so the message says what the token may do)."""

    def __init__(
        self, transport: Transport, budget_s: float, policies: Callable[[], tuple[str, ...]]
    ) -> None:
        self._transport = transport
        self._budget_s = budget_s
        self._since = transport.clock()
        self._policies = policies

    def __call__(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        allow_404_body: bool = False,
    ) -> dict[str, Any]:
        """The JSON answer of ``method`` on ``path``; errors as the transport maps them."""
        try:
            return self._transport.request(
                method,
                path,
                what=what,
                budget_s=self._budget_s,
                since=self._since,
                params=params,
                json=json,
                allow_404_body=allow_404_body,
            )
        except PermissionDenied as exc:
            policies = self._policies()
            if policies and "policies" not in str(exc):
                raise PermissionDenied(
                    f"{exc} (token policies: {', '.join(policies)})", token_rejected=exc.token_rejected
                ) from None
            raise


class VaultClient:
    """A token-authenticated connection to one server (or an HA cluster's address list, with
    failover: the token and the mounts learnt carry over, as it is one cluster): the Vault
    operations, each with an optional per-call retry budget (``budget_s``; default
    ``retry_timeout_s``)."""

    def __init__(
        self,
        settings: ServerSettings,
        token: str,
        *,
        retry_timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wire: Wire | None = None,
        wire_for: WireFactory | None = None,
        transport: Transport | None = None,
    ) -> None:
        """``wire`` / ``wire_for``: test seams of the transport; ``transport``: an existing one
        (``clone``)."""
        self.settings = settings
        self.retry_timeout_s = retry_timeout_s  # the default budget of every call
        self.sleep = sleep
        self.clock = clock
        self.policies: tuple[str, ...] = ()
        self._transport = transport or Transport(
            settings, token, sleep=sleep, clock=clock, wire=wire, wire_for=wire_for
        )
        self._kv = _KV()

    @property
    def token(self) -> str:
        """The token sent with every request."""
        return self._transport.token

    @property
    def address(self) -> str:
        """The server address in use now (with an address list: where failover moved)."""
        return self._transport.address

    def close(self) -> None:
        """Close the keep-alive session."""
        self._transport.close()

    def clone(self, *, retry_timeout_s: float) -> VaultClient:
        """A second client for another thread: its own session, the same token, policies,
        clocks and mount knowledge, and its own default budget."""
        other = VaultClient(
            self.settings,
            self.token,
            retry_timeout_s=retry_timeout_s,
            sleep=self.sleep,
            clock=self.clock,
            transport=self._transport.clone(),
        )
        other.policies = self.policies
        other._kv.mounts.update(self._kv.mounts)
        return other

    def set_token(self, token: str) -> None:
        """Use a new token from now on (a token file changed, or a re-login)."""
        self._transport.set_token(token)

    def _sender(self, budget_s: float | None) -> _Send:
        return _Sender(
            self._transport, self.retry_timeout_s if budget_s is None else budget_s, lambda: self.policies
        )

    # --- auth ----------------------------------------------------------------------------

    def lookup_self(self, *, budget_s: float | None = None) -> TokenInfo:
        """Check the token works; what the server says about it. AuthError if rejected."""
        try:
            body = self._sender(budget_s)("GET", "auth/token/lookup-self", what="token lookup")
        except PermissionDenied as exc:
            if not exc.token_rejected:
                # A valid token whose policies do not allow lookup-self (no `default` policy):
                # carry on without TTL information; reads will say what they may not do.
                log.debug("token lookup not permitted; token TTL unknown")
                return TokenInfo()
            raise self._rejected() from None
        except AuthError:
            raise self._rejected() from None
        data = body.get("data") or {}
        data = data if isinstance(data, dict) else {}
        self.policies = tuple(str(p) for p in data.get("policies") or ())
        return TokenInfo(int(data.get("ttl") or 0), bool(data.get("renewable")), self.policies)

    def _rejected(self) -> AuthError:
        return AuthError(f"the token was rejected by {self.address} (invalid, expired or revoked)")

    def login(
        self, mount: str, payload: Mapping[str, str], *, what: str, budget_s: float | None = None
    ) -> Login:
        """Log in at ``auth/<mount>/login``; the client uses the new token from then on."""
        send = self._sender(budget_s)
        try:
            body = send("POST", f"auth/{normalize_path(mount)}/login", what=what, json=payload)
        except (PermissionDenied, AuthError, SecretNotFound) as exc:
            raise AuthError(f"{what} refused by {self.address}: {_kind(exc)}") from None
        except SecretError as exc:
            raise AuthError(f"{what} refused: {exc}") from None
        auth = body.get("auth") or {}
        token = str(auth.get("client_token") or "")
        if not token:
            raise AuthError(f"{what}: the server returned no token")
        self.set_token(token)
        self.policies = tuple(str(p) for p in auth.get("policies") or ())
        return Login(
            token=token, ttl_s=int(auth.get("lease_duration") or 0), renewable=bool(auth.get("renewable"))
        )

    def renew_self(self, increment_s: int | None = None, *, budget_s: float | None = None) -> Login:
        """Renew inject's own token; AuthError when it cannot be renewed."""
        payload = {"increment": f"{increment_s}s"} if increment_s else {}
        try:
            body = self._sender(budget_s)("POST", "auth/token/renew-self", what="token renewal", json=payload)
        except SecretError as exc:
            raise AuthError(f"token renewal refused: {_kind(exc)}") from None
        auth = body.get("auth") or {}
        return Login(
            token=self.token,
            ttl_s=int(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    # --- leases --------------------------------------------------------------------------

    def renew_lease(self, lease_id: str, increment_s: int, *, budget_s: float | None = None) -> LeaseRenewal:
        """Ask for ``increment_s`` more seconds on a lease; the server may grant less."""
        body = self._sender(budget_s)(
            "PUT",
            "sys/leases/renew",
            what=f"renewal of lease {lease_id}",
            json={"lease_id": lease_id, "increment": increment_s},
        )
        return LeaseRenewal(
            lease_id=str(body.get("lease_id") or lease_id),
            ttl_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
        )

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        """Revoke a lease now (the credentials stop working)."""
        self._sender(budget_s)(
            "PUT", "sys/leases/revoke", what=f"revocation of lease {lease_id}", json={"lease_id": lease_id}
        )

    def lease_alive(self, lease_id: str, *, budget_s: float | None = None) -> bool:
        """True while the server still knows the lease."""
        try:
            self._sender(budget_s)(
                "PUT", "sys/leases/lookup", what=f"lookup of lease {lease_id}", json={"lease_id": lease_id}
            )
        except PermissionDenied:
            return True  # cannot tell; a failing renewal will say so later
        except SecretError:
            return False
        return True

    # --- secrets -------------------------------------------------------------------------

    def read(self, path: str, version: int | None = None, *, budget_s: float | None = None) -> Secret:
        """Read ``path`` as a person types it (KV ``data/`` added for v2) and return a Secret."""
        return self.fetch(KvRead.of(path, version), budget_s=budget_s)

    def fetch(self, request: Request, *, budget_s: float | None = None) -> Secret:
        """Do one request: read a secret, issue a certificate or decrypt a ciphertext."""
        return self._fetch(self._sender(budget_s), request)

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
        send = self._sender(budget_s)
        todo = sorted(set(requests), key=request_order)
        for request in todo:  # one mount lookup per mount, before the fan-out
            if isinstance(request, KvRead):
                with contextlib.suppress(SecretError):
                    self._kv.mount_for(send, request.path, quoted(request))
        found: dict[Request, Secret] = {}

        def read_one(request: Request) -> None:
            # Other failures are met again by the render, which names the template and line.
            with contextlib.suppress(SecretError, UsageError):
                found[request] = self._fetch(send, request)

        fan_out(todo, read_one, workers=workers, name="inject-read")
        return found

    def write(self, path: str, params: Mapping[str, Any], *, budget_s: float | None = None) -> Secret:
        """POST ``params`` to ``path`` for engines that issue on a write (``aws/sts/ROLE``,
        ``ssh/creds/ROLE``, ...) and return the answer as a Secret with its lease."""
        logical = normalize_path(path)
        body = self._sender(budget_s)("POST", logical, what=f"'{logical}'", json=params)
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"'{logical}' returned no data")
        _register_values(data, owner=("write", logical))
        return Secret(
            path=logical,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
        )

    def kv_put(self, path: str, data: Mapping[str, Any], *, budget_s: float | None = None) -> None:
        """Write ``data`` at ``path`` (a new version on KV v2); used by ``inject dev`` seeding."""
        self._kv.put(self._sender(budget_s), normalize_path(path), data)

    def _fetch(self, send: _Send, request: Request) -> Secret:
        if isinstance(request, PkiIssue):
            return _issue(send, request)
        if isinstance(request, TransitDecrypt):
            return _decrypt(send, request)
        secret = self._kv.read(send, request.path, request.version, shown=quoted(request))
        _register_values(secret.data, owner=request)
        log.debug("read %s %s", request.label, secret.describe)
        return secret


class _KV:
    """KV v1/v2 (and other engines' plain reads), with the mounts learnt so far."""

    def __init__(self) -> None:
        self.mounts: dict[str, _Mount] = {}

    def read(self, send: _Send, logical: str, version: int | None, *, shown: str = "") -> Secret:
        """The secret at ``logical`` (KV v2 ``data/`` added), at ``version`` if given;
        messages and logs name it ``shown`` (default: ``logical`` quoted)."""
        shown = shown or f"'{logical}'"
        mount = self.mount_for(send, logical, shown)
        try:
            if mount is not None and mount.kv_version == 2:
                return self._read_kv2(send, logical, mount, version, shown)
            if version is not None:
                raise UsageError(f"{shown}: a version was asked for, but it is not a KV v2 secret")
            return self._read_plain(send, logical, mount, shown)
        except NoRoute:
            # The mount was disabled (or never there). The mount stays remembered: looking it
            # up again would only get a misleading 403 ("preflight capability check"). A
            # computed path's mount is part of it: not named either.
            where = f"at '{mount.path}'" if mount is not None and shown == f"'{logical}'" else "there"
            raise SecretNotFound(f"{shown}: no secrets engine is mounted {where}") from None

    def put(self, send: _Send, logical: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` at ``logical`` (a new version on KV v2)."""
        mount = self.mount_for(send, logical)
        if mount is not None and mount.kv_version == 2:
            rest = logical[len(mount.path) :].removeprefix("data/")
            send("POST", f"{mount.path}data/{rest}", what=f"'{logical}'", json={"data": data})
        else:
            send("POST", logical, what=f"'{logical}'", json=data)

    def _read_kv2(self, send: _Send, logical: str, mount: _Mount, version: int | None, shown: str) -> Secret:
        rest = logical[len(mount.path) :].removeprefix("data/")
        params = {"version": str(version)} if version is not None else None
        url = f"{mount.path}data/{rest}"
        body = send("GET", url, what=shown, params=params, allow_404_body=True)
        inner = body.get("data") or {}
        metadata = inner.get("metadata") or {}
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

    def _read_plain(self, send: _Send, logical: str, mount: _Mount | None, shown: str) -> Secret:
        body = send("GET", logical, what=shown)
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"no secret at {shown}")
        return Secret(
            path=logical,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
            kv_version=mount.kv_version if mount else None,
        )

    def mount_for(self, send: _Send, logical: str, shown: str = "") -> _Mount | None:
        """The mount ``logical`` (named ``shown`` in messages) lives under (looked up once
        per mount); None if unknown."""
        for mount_path, mount in self.mounts.items():
            if (logical + "/").startswith(mount_path):
                return mount
        found = _lookup_mount(send, logical, shown or f"'{logical}'")
        if found is not None:
            self.mounts[found.path] = found
        return found


def _lookup_mount(send: _Send, logical: str, shown: str) -> _Mount | None:
    try:
        body = send("GET", f"sys/internal/ui/mounts/{logical}", what=f"{shown} (mount lookup)")
    except SecretNotFound:
        return None
    except SecretError as exc:
        if isinstance(exc, PermissionDenied):
            raise PermissionDenied(f"permission denied reading {shown}") from None
        return None
    data = body.get("data") or {}
    mount_path = str(data.get("path") or "")
    if not mount_path:
        return None
    kv_version = None
    if data.get("type") in ("kv", "generic"):
        options = data.get("options") or {}
        kv_version = 2 if str(options.get("version", "1")) == "2" else 1
    return _Mount(path=mount_path if mount_path.endswith("/") else mount_path + "/", kv_version=kv_version)


# --- PKI and transit -------------------------------------------------------------------------


def _issue(send: _Send, request: PkiIssue) -> Secret:
    role_path, shown = request.path, quoted(request)
    params = {name: value for name, value in request.params if value}  # an empty value: as if not given
    body = send("POST", role_path, what=f"certificate from {shown}", json=params)
    data = body.get("data") or {}
    if not isinstance(data, dict) or "certificate" not in data:
        raise SecretNotFound(f"{shown} returned no certificate")
    _register_values({"private_key": data.get("private_key", "")}, owner=request)
    expiration = float(data.get("expiration") or 0) or None
    log.debug("issued certificate %s from %s", data.get("serial_number", "?"), shown)
    return Secret(
        path=role_path,
        data=data,
        lease_id=str(body.get("lease_id") or ""),
        lease_duration_s=int(body.get("lease_duration") or 0),
        expires_at=expiration,
        issued_at=time.time(),
    )


def _decrypt(send: _Send, request: TransitDecrypt) -> Secret:
    path, shown = request.path, quoted(request)
    body = send("POST", path, what=f"decryption with {shown}", json={"ciphertext": request.ciphertext})
    encoded = str((body.get("data") or {}).get("plaintext") or "")
    try:
        plaintext = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretError(f"decryption with {shown} did not return UTF-8 text") from None
    register_secret(plaintext)
    return Secret(path=path, data={"plaintext": plaintext})


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
