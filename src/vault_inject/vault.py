"""The only module that talks to the server (and the only hvac importer).

It turns hvac/requests results into our own dataclasses and errors, so ``Any``
and third-party exceptions stop here. Every request goes through one retry loop:
connection errors, 429 and 5xx are retried with backoff until a deadline.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import hvac
import requests
import urllib3
from hvac.adapters import RawAdapter

from . import backoff
from .errors import (
    AuthError,
    PermissionDenied,
    SecretError,
    SecretNotFound,
    TransientError,
    UnreachableError,
    UsageError,
)
from .log import register_secret
from .model import PKI_PREFIX, READ_WORKERS, TRANSIT_PREFIX, Secret, strings_in
from .refs import normalize_path

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
MAX_RETRY_AFTER_S = 3600.0
MIN_ATTEMPT_TIMEOUT_S = 1.0  # an attempt near the retry deadline still gets this long
_TRANSIENT_STATUS = frozenset({412, 429, 500, 502, 503, 504})


class _RetryAfter(TransientError):
    """A 429 or 503 whose ``Retry-After`` asks for a pause before the next attempt."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _NoRoute(SecretNotFound):
    """A 404 for a path no secrets engine (or auth method) is mounted at."""


@dataclass(frozen=True)
class ServerSettings:
    """How to reach the server."""

    address: str
    namespace: str = ""
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""
    tls_skip_verify: bool = False
    request_timeout_s: float = REQUEST_TIMEOUT_S


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


@dataclass
class VaultClient:
    """A token-authenticated connection to one server, with mount detection and retries."""

    settings: ServerSettings
    token: str
    retry_timeout_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    policies: tuple[str, ...] = ()
    _mounts: dict[str, _Mount] = field(default_factory=dict)
    _client: Any = None

    def __post_init__(self) -> None:
        register_secret(self.token)
        self._client = hvac.Client(
            url=self.settings.address,
            token=self.token,
            namespace=self.settings.namespace or None,
            verify=self._verify(),
            cert=self._cert(),
            timeout=self.settings.request_timeout_s,
            adapter=RawAdapter,
        )

    def _verify(self) -> bool | str:
        if self.settings.tls_skip_verify:
            # asked for: no raw Python warning (breaking text/JSON logs) on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            return False
        return self.settings.ca_cert or True

    def _cert(self) -> tuple[str, str] | None:
        if self.settings.client_cert and self.settings.client_key:
            return (self.settings.client_cert, self.settings.client_key)
        return None

    def close(self) -> None:
        """Close the keep-alive session."""
        self._client.adapter.close()

    def clone(self, *, retry_timeout_s: float) -> VaultClient:
        """A second client (own session, shared mount knowledge) for another thread."""
        other = VaultClient(self.settings, self.token, retry_timeout_s=retry_timeout_s)
        other._mounts = dict(self._mounts)
        return other

    def set_token(self, token: str) -> None:
        """Use a new token from now on (a token file changed, or a re-login)."""
        register_secret(token)
        self.token = token
        self._client.token = token

    # --- public operations ---------------------------------------------------------

    def lookup_self(self) -> Mapping[str, Any]:
        """Check the token works; return its lookup data (policies, ttl). AuthError if rejected."""
        try:
            body = self._request("GET", "auth/token/lookup-self", what="token lookup")
        except PermissionDenied as exc:
            if not exc.token_rejected:
                # A valid token whose policies do not allow lookup-self (no `default` policy):
                # carry on without TTL information; reads will say what they may not do.
                log.debug("token lookup not permitted; token TTL unknown")
                return {}
            raise AuthError(
                f"the token was rejected by {self.settings.address} (invalid, expired or revoked)"
            ) from None
        except AuthError:
            raise AuthError(
                f"the token was rejected by {self.settings.address} (invalid, expired or revoked)"
            ) from None
        data = body.get("data") or {}
        data = data if isinstance(data, dict) else {}
        self.policies = tuple(str(p) for p in data.get("policies") or ())
        return data

    def login(self, mount: str, payload: Mapping[str, str], *, what: str) -> Login:
        """Log in at ``auth/<mount>/login``; the client uses the new token from then on."""
        try:
            body = self._request("POST", f"auth/{normalize_path(mount)}/login", what=what, json=payload)
        except (PermissionDenied, AuthError, SecretNotFound) as exc:
            raise AuthError(f"{what} refused by {self.settings.address}: {_kind(exc)}") from None
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

    def renew_self(self, increment_s: int | None = None) -> Login:
        """Renew inject's own token; AuthError when it cannot be renewed."""
        payload = {"increment": f"{increment_s}s"} if increment_s else {}
        try:
            body = self._request("POST", "auth/token/renew-self", what="token renewal", json=payload)
        except SecretError as exc:
            raise AuthError(f"token renewal refused: {_kind(exc)}") from None
        auth = body.get("auth") or {}
        return Login(
            token=self.token,
            ttl_s=int(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )

    def renew_lease(self, lease_id: str, increment_s: int) -> LeaseRenewal:
        """Ask for ``increment_s`` more seconds on a lease; the server may grant less."""
        body = self._request(
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

    def revoke_lease(self, lease_id: str) -> None:
        """Revoke a lease now (the credentials stop working)."""
        self._request(
            "PUT", "sys/leases/revoke", what=f"revocation of lease {lease_id}", json={"lease_id": lease_id}
        )

    def lease_alive(self, lease_id: str) -> bool:
        """True while the server still knows the lease."""
        try:
            self._request(
                "PUT", "sys/leases/lookup", what=f"lookup of lease {lease_id}", json={"lease_id": lease_id}
            )
        except PermissionDenied:
            return True  # cannot tell; a failing renewal will say so later
        except SecretError:
            return False
        return True

    def _issue(self, key: str) -> Secret:
        role_path, _, query = key[len(PKI_PREFIX) :].partition("?")
        params = dict(parse_qsl(query))
        body = self._request("POST", role_path, what=f"certificate from '{role_path}'", json=params)
        data = body.get("data") or {}
        if not isinstance(data, dict) or "certificate" not in data:
            raise SecretNotFound(f"'{role_path}' returned no certificate")
        _register_values({"private_key": data.get("private_key", "")})
        expiration = float(data.get("expiration") or 0) or None
        log.debug("issued certificate %s from %s", data.get("serial_number", "?"), role_path)
        return Secret(
            path=key,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            expires_at=expiration,
            issued_at=time.time(),
        )

    def _decrypt(self, key: str) -> Secret:
        path, _, ciphertext = key[len(TRANSIT_PREFIX) :].partition("#")
        body = self._request("POST", path, what=f"decryption with '{path}'", json={"ciphertext": ciphertext})
        encoded = str((body.get("data") or {}).get("plaintext") or "")
        try:
            plaintext = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SecretError(f"decryption with '{path}' did not return UTF-8 text") from None
        register_secret(plaintext)
        return Secret(path=key, data={"plaintext": plaintext})

    def read(self, path: str, version: int | None = None) -> Secret:
        """Read ``path`` as a person types it (KV ``data/`` added for v2) and return a Secret.

        ``pki:`` and ``transit:`` keys (see pki_key, transit_key) issue or decrypt instead."""
        if path.startswith(PKI_PREFIX):
            return self._issue(path)
        if path.startswith(TRANSIT_PREFIX):
            return self._decrypt(path)
        logical = normalize_path(path)
        mount = self._mount_for(logical)
        try:
            if mount is not None and mount.kv_version == 2:
                secret = self._read_kv2(logical, mount, version)
            else:
                if version is not None:
                    raise UsageError(f"'{logical}': a version was asked for, but it is not a KV v2 secret")
                secret = self._read_plain(logical, mount)
        except _NoRoute:
            # The mount was disabled (or never there). The mount stays remembered: looking it
            # up again would only get a misleading 403 ("preflight capability check").
            where = f"at '{mount.path}'" if mount is not None else "there"
            raise SecretNotFound(f"'{logical}': no secrets engine is mounted {where}") from None
        _register_values(secret.data)
        log.debug("read %s %s", logical, secret.describe)
        return secret

    def read_many(
        self, keys: Iterable[tuple[str, int | None]], *, workers: int = READ_WORKERS
    ) -> dict[tuple[str, int | None], Secret]:
        """Read many secrets concurrently over the keep-alive pool; return those that could be
        read. Failures other than an outage are left for the caller to meet again in context."""
        todo = sorted(set(keys), key=lambda k: (k[0], k[1] or 0))
        for path, _ in todo:  # one mount lookup per mount, before the fan-out
            if not path.startswith((PKI_PREFIX, TRANSIT_PREFIX)):
                with contextlib.suppress(SecretError):
                    self._mount_for(normalize_path(path))
        found: dict[tuple[str, int | None], Secret] = {}
        if len(todo) <= 1 or workers <= 1:
            for key in todo:
                self._read_into(found, key)
            return found
        from concurrent.futures import ThreadPoolExecutor  # only when there is a fan-out

        with ThreadPoolExecutor(
            max_workers=min(workers, len(todo)), thread_name_prefix="inject-read"
        ) as pool:
            list(pool.map(lambda key: self._read_into(found, key), todo))
        return found

    def _read_into(self, found: dict[tuple[str, int | None], Secret], key: tuple[str, int | None]) -> None:
        # Other failures are met again by the render, which names the template and line.
        with contextlib.suppress(SecretError, UsageError):
            found[key] = self.read(*key)

    def write(self, path: str, params: Mapping[str, Any]) -> Secret:
        """POST ``params`` to ``path`` for engines that issue on a write (``aws/sts/ROLE``,
        ``ssh/creds/ROLE``, ...) and return the answer as a Secret with its lease."""
        logical = normalize_path(path)
        body = self._request("POST", logical, what=f"'{logical}'", json=params)
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"'{logical}' returned no data")
        _register_values(data)
        return Secret(
            path=logical,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
        )

    def kv_put(self, path: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` at ``path`` (a new version on KV v2); used by ``inject dev`` seeding."""
        logical = normalize_path(path)
        mount = self._mount_for(logical)
        if mount is not None and mount.kv_version == 2:
            rest = logical[len(mount.path) :].removeprefix("data/")
            self._request("POST", f"{mount.path}data/{rest}", what=f"'{logical}'", json={"data": data})
        else:
            self._request("POST", logical, what=f"'{logical}'", json=data)

    # --- KV and generic reads --------------------------------------------------------

    def _read_kv2(self, logical: str, mount: _Mount, version: int | None) -> Secret:
        rest = logical[len(mount.path) :]
        if rest.startswith("data/"):
            rest = rest[len("data/") :]
        params = {"version": str(version)} if version is not None else None
        url = f"{mount.path}data/{rest}"
        body = self._request("GET", url, what=f"'{logical}'", params=params, allow_404_body=True)
        inner = body.get("data") or {}
        metadata = inner.get("metadata") or {}
        data = inner.get("data")
        if data is None:
            raise SecretNotFound(_kv2_missing_message(logical, version, metadata))
        return Secret(
            path=logical,
            data=data,
            version=_int_or_none(metadata.get("version")),
            created_time=metadata.get("created_time"),
            kv_version=2,
        )

    def _read_plain(self, logical: str, mount: _Mount | None) -> Secret:
        body = self._request("GET", logical, what=f"'{logical}'")
        data = body.get("data")
        if not isinstance(data, dict):
            raise SecretNotFound(f"no secret at '{logical}'")
        return Secret(
            path=logical,
            data=data,
            lease_id=str(body.get("lease_id") or ""),
            lease_duration_s=int(body.get("lease_duration") or 0),
            renewable=bool(body.get("renewable")),
            kv_version=mount.kv_version if mount else None,
        )

    def _mount_for(self, logical: str) -> _Mount | None:
        for mount_path, mount in self._mounts.items():
            if (logical + "/").startswith(mount_path):
                return mount
        found = self._lookup_mount(logical)
        if found is not None:
            self._mounts[found.path] = found
        return found

    def _lookup_mount(self, logical: str) -> _Mount | None:
        try:
            body = self._request(
                "GET", f"sys/internal/ui/mounts/{logical}", what=f"'{logical}' (mount lookup)"
            )
        except SecretNotFound:
            return None
        except SecretError as exc:
            if isinstance(exc, PermissionDenied):
                raise PermissionDenied(f"permission denied reading '{logical}'") from None
            return None
        data = body.get("data") or {}
        mount_path = str(data.get("path") or "")
        if not mount_path:
            return None
        kv_version = None
        if data.get("type") in ("kv", "generic"):
            options = data.get("options") or {}
            kv_version = 2 if str(options.get("version", "1")) == "2" else 1
        return _Mount(
            path=mount_path if mount_path.endswith("/") else mount_path + "/", kv_version=kv_version
        )

    # --- the one request loop --------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        allow_404_body: bool = False,
    ) -> dict[str, Any]:
        deadline = self.clock() + self.retry_timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                timeout_s = self._attempt_timeout_s(deadline)
                return self._attempt(method, path, what, params, json, allow_404_body, timeout_s)
            except PermissionDenied as exc:
                if self.policies and "policies" not in str(exc):
                    raise PermissionDenied(
                        f"{exc} (token policies: {', '.join(self.policies)})",
                        token_rejected=exc.token_rejected,
                    ) from None
                raise
            except TransientError as exc:
                # Honour the server's Retry-After; when that lands past the deadline, give
                # up now rather than sleep through the deadline for an answer that cannot come.
                retry_after_s = exc.retry_after_s if isinstance(exc, _RetryAfter) else 0.0
                wait_s = max(backoff.delay_s(attempt), retry_after_s)
                if self.clock() + wait_s > deadline:
                    raise self._gave_up(what, exc, retry_after_s) from None
                log.debug("retrying %s in %.2fs: %s", what, wait_s, exc)
                self.sleep(wait_s)

    def _attempt_timeout_s(self, deadline: float) -> float:
        """How long one attempt may wait for the server: the request timeout, but no longer
        than what is left of the retry deadline (so a stalled server at startup ends near
        ``--retry-timeout``, and the loop's own requests cannot block it for long). A client
        with no retry budget (one attempt per poll) keeps the full request timeout."""
        if self.retry_timeout_s <= 0:
            return self.settings.request_timeout_s
        left_s = deadline - self.clock()
        return min(self.settings.request_timeout_s, max(MIN_ATTEMPT_TIMEOUT_S, left_s))

    def _gave_up(self, what: str, exc: TransientError, retry_after_s: float) -> UnreachableError:
        within = f" within {self.retry_timeout_s:g}s" if self.retry_timeout_s > 0 else ""
        asked = f" (the server asked to retry after {retry_after_s:g}s)" if retry_after_s else ""
        return UnreachableError(f"{self.settings.address} did not answer {what}{within}: {exc}{asked}")

    def _attempt(
        self,
        method: str,
        path: str,
        what: str,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        allow_404_body: bool,
        timeout_s: float,
    ) -> dict[str, Any]:
        url = "/v1/" + quote(path, safe="/-_.~@:")
        try:
            response = self._client.adapter.request(
                method, url, params=params, json=json, raise_exception=False, timeout=timeout_s
            )
        except requests.exceptions.SSLError as exc:
            raise UnreachableError(
                f"TLS error talking to {self.settings.address}: {_tls_reason(exc)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(_reason(exc)) from None
        return _check_status(response, what, allow_404_body)


def _check_status(response: requests.Response, what: str, allow_404_body: bool) -> dict[str, Any]:
    status = response.status_code
    if status in _TRANSIENT_STATUS:
        retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
        if retry_after_s and status in (429, 503):
            raise _RetryAfter(f"HTTP {status}", retry_after_s=retry_after_s)
        raise TransientError(f"HTTP {status}")
    if status == 204:
        return {}
    if 200 <= status < 300:
        return _success_body(response)
    body = _json_body(response)
    if status == 404 and allow_404_body and isinstance(body.get("data"), dict):
        return body  # KV v2 answers 404 with metadata for a deleted version
    if status == 404 and any("no handler for route" in str(e) for e in body.get("errors") or ()):
        raise _NoRoute(f"nothing is mounted for {what}")
    if status == 404:
        raise SecretNotFound(f"no secret at {what}")
    if status == 403:
        # The server answers a bare "permission denied" for an unknown token and wraps the
        # ACL refusal of a valid token ("1 error occurred: ... permission denied").
        raise PermissionDenied(
            f"permission denied reading {what}", token_rejected=body.get("errors") == ["permission denied"]
        )
    if status == 401:
        raise AuthError(f"not authenticated for {what} (the token is missing or was rejected)")
    # Not the server's error text: a response body may echo request data (SECURITY.md).
    raise SecretError(f"server refused {what}: HTTP {status}{_STATUS_HINTS.get(status, '')}")


def _retry_after_s(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); 0 when absent or bad."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return min(MAX_RETRY_AFTER_S, max(0.0, when.timestamp() - time.time()))


def _success_body(response: requests.Response) -> dict[str, Any]:
    # A 2xx whose body does not parse was cut short or mangled on the way: try again.
    # The parser's message is not passed on (it quotes the body).
    if not response.content.strip():
        return {}
    try:
        body = response.json()
    except ValueError:
        raise TransientError("the answer was not valid JSON (cut short?)") from None
    return body if isinstance(body, dict) else {}


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_STATUS_HINTS = {
    400: " (the server rejected the request: check the path, role and parameters)",
    405: " (this path does not support the operation)",
}


def _tls_reason(exc: Exception) -> str:
    # SSLError is a ConnectionError: without this it would read "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "the server's certificate is not trusted (give --ca-cert, or --tls-skip-verify)"
    if "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc):
        return "the server wants a client certificate (give --client-cert and --client-key)"
    return "TLS handshake failed"


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "the answer was cut short"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection refused or reset"
    return type(exc).__name__


def _kv2_missing_message(logical: str, version: int | None, metadata: Mapping[str, Any]) -> str:
    which = f"version {version} of '{logical}'" if version is not None else f"'{logical}'"
    if metadata.get("destroyed"):
        return f"{which} was destroyed"
    if metadata.get("deletion_time"):
        return f"{which} was deleted"
    return f"no secret at {which}"


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _register_values(data: Mapping[str, Any]) -> None:
    for value in strings_in(data):  # lists too: a KV value may be a JSON array
        register_secret(value)


def _kind(exc: Exception) -> str:
    if isinstance(exc, PermissionDenied):
        return "permission denied"
    if isinstance(exc, SecretNotFound):
        return "no such auth mount or role"
    return "rejected"
