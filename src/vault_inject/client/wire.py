"""The wire: one HTTP exchange with one server address over the adapter's requests session,
bounded by a wall-clock deadline (``deadline.Attempt``), its body read in capped chunks.

What requests would look up in the environment at every request (proxy variables with
NO_PROXY, a CA bundle, ``~/.netrc``) is looked up once per address, here. ``~/.netrc`` is
not read at all: Vault authenticates by token, and a netrc password for the server's host
would otherwise be sent to it as Basic auth. Redirects are never followed by requests (the
adapter follows them, same origin or a listed address only): requests strips only
``Authorization`` on a cross-host redirect, not ``X-Vault-Token``.

Every connection the exchange reads from registers with the attempt (the urllib3 connection
subclasses below, through requests' documented ``HTTPAdapter.init_poolmanager`` hook), so
giving up at the deadline shuts those sockets down and the blocked read returns at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Protocol

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import SecretError, TransientError, UnreachableError
from .deadline import Attempt, watched
from .replies import Answer

MAX_BODY_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


class Wire(Protocol):
    """One HTTP exchange at a time with one server address; ``SessionWire`` is the real one."""

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        json: Any,
        timeout_s: float,
    ) -> Answer:
        """Send one request (``url`` relative to the address) and read its answer within
        ``timeout_s`` wall-clock seconds, or raise TransientError / UnreachableError."""
        ...  # pragma: no cover - a protocol


class SessionWire:
    """Exchanges with one address over a shared requests session (its pools are per host)."""

    def __init__(self, session: requests.Session, settings: TlsSettings, address: str) -> None:
        self._session = session
        self._address = address.rstrip("/")
        self._verify = verify_setting(settings, os.environ, address)
        self._cert = cert_setting(settings)
        self._proxies = requests.utils.get_environ_proxies(address)

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        json: Any,
        timeout_s: float,
    ) -> Answer:
        """Send and read the answer; give up on it after ``timeout_s`` (``deadline.Attempt``)."""
        return Attempt(lambda: self._send(method, url, what, headers, params, json, timeout_s)).run(timeout_s)

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None,
        json: Any,
        timeout_s: float,
    ) -> Answer:
        # The socket timeout is a backstop; the attempt's wall-clock deadline is the bound.
        try:
            response = self._session.request(
                method,
                self._address + url,
                headers=dict(headers),
                params=params,
                json=json,
                timeout=timeout_s,
                stream=True,
                allow_redirects=False,
                verify=self._verify,
                cert=self._cert,
                proxies=self._proxies,
            )
            with contextlib.closing(response):
                body = _read_capped(response, what)
                return Answer(response.status_code, response.headers, body, str(response.url))
        except requests.exceptions.SSLError as exc:
            raise UnreachableError(f"TLS error talking to {self._address}: {_tls_reason(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(_reason(exc)) from None


class TlsSettings(Protocol):
    """What the wire needs of ``ServerSettings``."""

    @property
    def ca_cert(self) -> str: ...
    @property
    def client_cert(self) -> str: ...
    @property
    def client_key(self) -> str: ...
    @property
    def tls_skip_verify(self) -> bool: ...


def new_session(settings: TlsSettings) -> requests.Session:
    """A session that reads nothing from the environment per request (``trust_env`` off) and
    whose connections report to the attempt's watch."""
    session = requests.Session()
    session.trust_env = False
    session.cert = cert_setting(settings)
    for prefix in ("http://", "https://"):
        session.mount(prefix, _WatchedAdapter())
    return session


def verify_setting(settings: TlsSettings, environ: Mapping[str, str], address: str) -> bool | str:
    """requests' ``verify`` for ``address``: the CA bundle, False when asked, True otherwise."""
    if not address.lower().startswith("https:"):
        # Nothing to verify over plain HTTP; a CA bundle path would only be stat'ed by
        # requests at every request (a file or a directory?) for nothing.
        return True
    if settings.tls_skip_verify:
        # asked for: no raw Python warning (breaking text/JSON logs) on every request
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    # requests' own CA bundle variables, which it would look up at every request (trust_env)
    return settings.ca_cert or environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True


def cert_setting(settings: TlsSettings) -> tuple[str, str] | None:
    """requests' ``cert``: the client certificate and key, when both are given."""
    if settings.client_cert and settings.client_key:
        return (settings.client_cert, settings.client_key)
    return None


def _read_capped(response: requests.Response, what: str) -> bytes:
    """The body, read in chunks; larger than MAX_BODY_BYTES (declared or read) is an error."""
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(what)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(what)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> SecretError:
    limit_mib = MAX_BODY_BYTES // (1024 * 1024)
    return SecretError(
        f"the answer to {what} is larger than {limit_mib} MiB; not read (is VAULT_ADDR right?)"
    )


def _tls_reason(exc: Exception) -> str:
    # SSLError is a ConnectionError: without this it would read "connection refused"
    if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
        return "TLS handshake failed: the server answered in plain HTTP (use an http:// address?)"
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
        cause = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(cause, urllib3.exceptions.NameResolutionError):
            return "the server's host name did not resolve"
        return "connection refused or reset"
    return type(exc).__name__


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:  # the status line, headers and body are read from here on
        watched(self)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        watched(self)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose pools make connections that report to the attempt's watch."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:  # not SOCKS: those pools are its own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
