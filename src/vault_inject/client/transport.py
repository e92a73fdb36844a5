"""The HTTP transport to the server: the only hvac/requests importer (the Vault operations
on top of it are in ``vault.py``, as httpx splits its transport from its client).

One call of ``Transport.request`` is::

    request(budget_s) ── attempt ──> exchange (wall-clock deadline: ``deadline.py``)
        │                  │            └─ status + headers + body (capped at 16 MiB)
        │                  ├─ 3xx to the same scheme+host+port: follow (at most 5 hops)
        │                  ├─ 3xx anywhere else: UnreachableError, not retried (the token
        │                  │  would go with it; the message names only the target's origin)
        │                  ├─ body over 16 MiB: SecretError naming the request, not retried
        │                  └─ status -> dict, or one of our errors (``check_status``)
        └─ TransientError (connection error, timeout, 412/429/473/5xx, cut-short body):
           with an address list, fail over to the next address at once (``failover.py``);
           once every address failed in this round, back off (or honour Retry-After) and
           try again until the budget is spent, then
           UnreachableError "<address(es)> did not answer <what> within <budget>s: ..."

Address list: ``ServerSettings.addresses`` (an HA cluster's nodes). Each address has its own
wire (own connections, same token); the current one is shared with clones, so a failover is
made and logged once. A redirect to another address *in the list* is followed there and
makes it current (a standby naming the active node); one anywhere else is refused as above.

Budget: ``budget_s`` seconds from ``since`` (default: now) for all attempts of one call;
``0`` means one attempt (per address) with the full request timeout. One attempt may take
min(request timeout, what is left of the budget, but at least MIN_ATTEMPT_TIMEOUT_S).

Deadline: that limit is wall-clock time for the whole attempt, not a socket timeout (a
server that trickles a byte every 0.5 s never trips a read timeout): ``deadline.Attempt``
runs the exchange on a helper thread the caller gives up on at the deadline (or, on a
fan-out worker, in place with a watchdog), and every connection the exchange reads from
registers with the attempt (through the urllib3 connection subclasses below), so giving
up shuts those sockets down and the blocked read returns at once.

Bodies are streamed and read in chunks up to MAX_BODY_BYTES; a bigger answer (declared or
actual) is an error naming the request, never read whole. Redirects are never followed
by requests itself: hvac sends ``X-Vault-Token`` on every request, and requests only
strips ``Authorization`` on a cross-host redirect.
"""

from __future__ import annotations

import contextlib
import email.utils
import json as jsonlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from hvac.adapters import RawAdapter
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import (
    AuthError,
    PermissionDenied,
    SecretError,
    SecretNotFound,
    TransientError,
    UnreachableError,
)
from ..log import register_secret
from . import backoff
from .deadline import Attempt, watched
from .failover import Failover

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
MAX_RETRY_AFTER_S = 3600.0
MIN_ATTEMPT_TIMEOUT_S = 1.0  # an attempt near the retry deadline still gets this long
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
# 501 is the one 5xx that says "never" (not implemented), not "not now" or "not this node".
_TRANSIENT_STATUS = frozenset({412, 429, 473} | set(range(500, 600)) - {501})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/-_.~@:"


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
    addresses: tuple[str, ...] = ()  # an HA cluster's nodes, for failover; () = address alone

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every address to use, in order: ``address`` first, then the rest of ``addresses``.
        A list without ``address`` in it is not this server's (``address`` was replaced, as
        ``inject dev`` does): ``address`` alone, so the token goes nowhere else."""
        if self.address not in self.addresses:
            return (self.address,)
        return (self.address, *(a for a in dict.fromkeys(self.addresses) if a != self.address))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole (within the cap) on the helper thread."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    body: bytes
    url: str  # where it came from (redirect targets are resolved against it)


class Wire(Protocol):
    """One HTTP exchange at a time with one server; ``_HvacWire`` is the real one."""

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout_s: float,
    ) -> Answer:
        """Send one request (``url`` relative to the address) and read its answer within
        ``timeout_s`` wall-clock seconds, or raise TransientError / UnreachableError."""
        ...  # pragma: no cover - a protocol

    def set_token(self, token: str) -> None:
        """Send this token from now on."""
        ...  # pragma: no cover - a protocol

    def clone(self) -> Wire:
        """Another wire to the same server with its own connections."""
        ...  # pragma: no cover - a protocol

    def close(self) -> None:
        """Close the keep-alive connections."""
        ...  # pragma: no cover - a protocol


class NoRoute(SecretNotFound):
    """A 404 for a path no secrets engine (or auth method) is mounted at."""


class _RetryAfter(TransientError):
    """A 429 or 503 whose ``Retry-After`` asks for a pause before the next attempt."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class _Call:
    """What one ``request`` sends, as the wire needs it."""

    method: str
    url: str  # "/v1/..." relative to the address
    what: str
    params: Mapping[str, str] | None
    json: Mapping[str, Any] | None
    allow_404_body: bool


WireFactory = Callable[[str, str], Wire]  # (address, token) -> a wire to that address


class Transport:
    """Requests to one server (or one of an address list, failing over): retries within a
    per-call budget, wall-clock attempt deadlines, redirects only to the same origin or
    another listed address, statuses mapped to our errors."""

    def __init__(
        self,
        settings: ServerSettings,
        token: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wire: Wire | None = None,
        wire_for: WireFactory | None = None,
        failover: Failover | None = None,
    ) -> None:
        """``wire`` is the wire to the first address (tests of one server); ``wire_for`` makes
        the wire to any address (default: the real one); ``failover`` is shared by clones."""
        register_secret(token)
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self._token = token
        self._wire_for: WireFactory = wire_for or (lambda address, tok: _HvacWire(settings, tok, address))
        self._failover = failover or Failover(settings.candidates)
        self._wires: dict[int, Wire] = {0: wire} if wire is not None else {}
        self._wires_lock = threading.Lock()

    @property
    def token(self) -> str:
        """The token sent with every request."""
        return self._token

    @property
    def address(self) -> str:
        """The address requests go to now (the first one, or where a failover moved)."""
        return self._failover.address(self._failover.current)

    @property
    def wire(self) -> Wire:
        """The wire to the current address."""
        return self._wire(self._failover.current)

    def _wire(self, index: int) -> Wire:
        # made on first use; the lock keeps fan-out threads from making two (one would leak)
        with self._wires_lock:
            if index not in self._wires:
                self._wires[index] = self._wire_for(self._failover.address(index), self._token)
            return self._wires[index]

    def set_token(self, token: str) -> None:
        """Send a new token from now on (to every address)."""
        register_secret(token)
        self._token = token
        for wire in list(self._wires.values()):
            wire.set_token(token)

    def clone(self) -> Transport:
        """Another transport to the same server(s): own connections, the same token, clocks
        and current address (a failover by either is one for both)."""
        other = Transport(
            self.settings,
            self._token,
            sleep=self.sleep,
            clock=self.clock,
            wire_for=self._wire_for,
            failover=self._failover,
        )
        other._wires = {index: wire.clone() for index, wire in list(self._wires.items())}
        return other

    def close(self) -> None:
        """Close the keep-alive connections."""
        for wire in list(self._wires.values()):
            wire.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        budget_s: float,
        since: float | None = None,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        allow_404_body: bool = False,
    ) -> dict[str, Any]:
        """``method`` on ``/v1/<path>``: the JSON answer, retried for ``budget_s`` seconds from
        ``since`` (a ``clock`` reading; default now). ``what`` names the request in errors."""
        call = _Call(method, "/v1/" + quote(path, safe=_PATH_SAFE), what, params, json, allow_404_body)
        deadline = (self.clock() if since is None else since) + budget_s
        rounds = 0
        tried: set[int] = set()  # the addresses that failed in this round
        while True:
            index = self._failover.current
            try:
                return self._attempt(call, index, self._attempt_timeout_s(budget_s, deadline))
            except TransientError as exc:
                tried.add(index)
                current = self._failover.failed(index, str(exc))
                if current not in tried and self._time_left(budget_s, deadline):
                    continue  # another address has not failed yet: try it at once
                rounds, tried = rounds + 1, set()
                # Honour the server's Retry-After; when that lands past the deadline, give
                # up now rather than sleep through the deadline for an answer that cannot come.
                retry_after_s = exc.retry_after_s if isinstance(exc, _RetryAfter) else 0.0
                wait_s = max(backoff.delay_s(rounds), retry_after_s)
                if self.clock() + wait_s > deadline:
                    raise self._gave_up(what, exc, retry_after_s, budget_s) from None
                log.debug("retrying %s in %.2fs: %s", what, wait_s, exc)
                self.sleep(wait_s)

    def _time_left(self, budget_s: float, deadline: float) -> bool:
        """True while the budget allows another attempt (a call with no budget tries every
        address once)."""
        return budget_s <= 0 or self.clock() < deadline

    def _attempt_timeout_s(self, budget_s: float, deadline: float) -> float:
        """How long one attempt may take: the request timeout, but no longer than what is
        left of the budget (so a stalled server at startup ends near ``--retry-timeout``).
        A call with no budget (one attempt, e.g. per poll) keeps the full request timeout."""
        if budget_s <= 0:
            return self.settings.request_timeout_s
        left_s = deadline - self.clock()
        return min(self.settings.request_timeout_s, max(MIN_ATTEMPT_TIMEOUT_S, left_s))

    def _attempt(self, call: _Call, index: int, timeout_s: float) -> dict[str, Any]:
        """One attempt on address ``index``, redirects included, all within ``timeout_s``."""
        ends_at = self.clock() + timeout_s
        method, url, params, body = call.method, call.url, call.params, call.json
        for _ in range(MAX_REDIRECTS + 1):
            left_s = max(0.0, ends_at - self.clock())
            answer = self._wire(index).exchange(
                method, url, what=call.what, params=params, json=body, timeout_s=left_s
            )
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECT_STATUS or not location:
                if answer.status not in _TRANSIENT_STATUS:
                    self._failover.answered(index)  # up, even when the answer is a refusal
                return check_status(answer, call.what, call.allow_404_body)
            url, index = self._follow(urljoin(answer.url, location), index, call.what)
            method, body = redirected_method(answer.status, method, body)
            params = None  # the Location carries its own query
        where = self._failover.address(index)
        raise UnreachableError(f"{where} redirected {call.what} more than {MAX_REDIRECTS} times; giving up")

    def _follow(self, target: str, index: int, what: str) -> tuple[str, int]:
        """Where a redirect from address ``index`` goes: (address-relative URL, address index).
        The same origin, or another address of the list (which then becomes current);
        anywhere else is refused (naming only the target's origin: its path or query may
        carry data)."""
        here = self._failover.address(index)
        relative = same_origin_path(here, target)
        if relative is not None:
            log.debug("following a redirect of %s on %s", what, here)
            return relative, index
        for other, address in enumerate(self._failover.addresses):
            relative = same_origin_path(address, target)
            if relative is not None:
                self._failover.redirected(index, other)
                return relative, other
        listed = "the configured addresses" if len(self._failover.addresses) > 1 else "the configured address"
        raise UnreachableError(
            f"{here} redirected {what} to {origin_of(target)}, another server:"
            f" refused, the token is only sent to {listed}"
            " (point VAULT_ADDR at the server that should answer, or list it in INJECT_ADDRESSES)"
        )

    def _gave_up(
        self, what: str, exc: TransientError, retry_after_s: float, budget_s: float
    ) -> UnreachableError:
        within = f" within {budget_s:g}s" if budget_s > 0 else ""
        asked = f" (the server asked to retry after {retry_after_s:g}s)" if retry_after_s else ""
        who = ", ".join(self._failover.addresses)
        return UnreachableError(f"{who} did not answer {what}{within}: {exc}{asked}")


# --- redirects (pure) ----------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``url``, default ports filled in; None when it has none."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:  # a port that is not a number
        return None
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url`` for messages (never its path or query)."""
    found = _origin(url)
    if found is None:
        return "an address that is not http(s)"
    scheme, host, port = found
    return f"{scheme}://{host}:{port}"


def same_origin_path(address: str, target: str) -> str | None:
    """``target`` relative to ``address`` (path and query) when both have the same scheme,
    host and port and the target is under the address's path; None otherwise."""
    if _origin(address) is None or _origin(address) != _origin(target):
        return None
    prefix = urlsplit(address).path.rstrip("/")
    parts = urlsplit(target)
    if not parts.path.startswith(prefix + "/"):
        return None
    relative = parts.path[len(prefix) :]
    return f"{relative}?{parts.query}" if parts.query else relative


def redirected_method(
    status: int, method: str, body: Mapping[str, Any] | None
) -> tuple[str, Mapping[str, Any] | None]:
    """The method and body of the redirected request: 307/308 keep both; 303 (and 301/302
    after a POST, as clients do) turn into a GET without a body."""
    if status in (307, 308) or method.upper() in ("GET", "HEAD"):
        return method, body
    if status == 303 or method.upper() == "POST":
        return "GET", None
    return method, body


# --- status mapping (pure) -----------------------------------------------------------------


def check_status(answer: Answer, what: str, allow_404_body: bool) -> dict[str, Any]:
    """The JSON body of a successful answer, or the error the status means."""
    status = answer.status
    if status in _TRANSIENT_STATUS:
        reason = f"HTTP {status}{_transient_hint(status, answer.body)}"
        retry_after_s = _retry_after_s(answer.headers.get("Retry-After"))
        if retry_after_s and status in (429, 503):
            raise _RetryAfter(reason, retry_after_s=retry_after_s)
        raise TransientError(reason)
    if status == 204:
        return {}
    if 200 <= status < 300:
        return _success_body(answer.body)
    body = _json_body(answer.body)
    if status == 404 and allow_404_body and isinstance(body.get("data"), dict):
        return body  # KV v2 answers 404 with metadata for a deleted version
    if status == 404 and any("no handler for route" in str(e) for e in body.get("errors") or ()):
        raise NoRoute(f"nothing is mounted for {what}")
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


def _transient_hint(status: int, raw: bytes) -> str:
    """What a retried status says about the node, in our words (never the body's text)."""
    if status == 503 and any("sealed" in str(e).lower() for e in _json_body(raw).get("errors") or ()):
        return " (sealed)"
    if status == 473:
        return " (a performance standby)"
    return ""


_STATUS_HINTS = {
    400: " (the server rejected the request: check the path, role and parameters)",
    405: " (this path does not support the operation)",
}


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


def _success_body(raw: bytes) -> dict[str, Any]:
    # A 2xx whose body does not parse was cut short or mangled on the way: try again.
    # The parser's message is not passed on (it quotes the body).
    if not raw.strip():
        return {}
    try:
        body = jsonlib.loads(raw)
    except ValueError:
        raise TransientError("the answer was not valid JSON (cut short?)") from None
    return body if isinstance(body, dict) else {}


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = jsonlib.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


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


# --- the wire: hvac's adapter, one attempt within its deadline ------------------------------


class _HvacWire:
    """hvac's raw adapter over a requests session whose connections report to the attempt's
    attempt; each exchange is bounded by a wall-clock deadline (``deadline.Attempt``)."""

    def __init__(self, settings: ServerSettings, token: str, address: str | None = None) -> None:
        self._settings = settings
        self._address = address or settings.address
        # hvac's adapter itself, not an hvac.Client: the client only adds the API classes
        # (hvac.api), which inject does not use: it speaks the HTTP API.
        self._adapter = RawAdapter(
            base_uri=self._address,
            token=token,
            namespace=settings.namespace or None,
            verify=_verify(settings, os.environ, self._address),
            cert=_cert(settings),
            timeout=settings.request_timeout_s,
            allow_redirects=False,  # followed (same origin only) by Transport
            session=_session(settings, self._address),
        )

    def exchange(
        self,
        method: str,
        url: str,
        *,
        what: str,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout_s: float,
    ) -> Answer:
        """Send and read the answer; give up on it after ``timeout_s`` (``deadline.Attempt``)."""
        return Attempt(lambda: self._send(method, url, what, params, json, timeout_s)).run(timeout_s)

    def set_token(self, token: str) -> None:
        """Send this token from now on."""
        self._adapter.token = token

    def clone(self) -> _HvacWire:
        """A wire with its own session."""
        return _HvacWire(self._settings, str(self._adapter.token), self._address)

    def close(self) -> None:
        """Close the keep-alive session (an abandoned helper on it fails, unheard)."""
        self._adapter.close()

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        params: Mapping[str, str] | None,
        json: Mapping[str, Any] | None,
        timeout_s: float,
    ) -> Answer:
        # The socket timeout is a backstop; the attempt's wall-clock deadline is the bound.
        try:
            response = self._adapter.request(
                method, url, params=params, json=json, raise_exception=False, timeout=timeout_s, stream=True
            )
            with contextlib.closing(response):
                body = _read_capped(response, what)
                return Answer(response.status_code, response.headers, body, str(response.url))
        except requests.exceptions.SSLError as exc:
            raise UnreachableError(f"TLS error talking to {self._address}: {_tls_reason(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise TransientError(_reason(exc)) from None


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


def _verify(settings: ServerSettings, environ: Mapping[str, str], address: str) -> bool | str:
    if not address.lower().startswith("https:"):
        # Nothing to verify over plain HTTP; a CA bundle path would only be stat'ed by
        # requests at every request (a file or a directory?) for nothing.
        return True
    if settings.tls_skip_verify:
        # asked for: no raw Python warning (breaking text/JSON logs) on every request
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    # requests' own CA bundle variables, which it would look up at every request (below)
    return settings.ca_cert or environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True


def _cert(settings: ServerSettings) -> tuple[str, str] | None:
    if settings.client_cert and settings.client_key:
        return (settings.client_cert, settings.client_key)
    return None


def _session(settings: ServerSettings, address: str) -> requests.Session:
    """A session for one server address. What requests looks up in the environment at every
    request (proxy variables with NO_PROXY, a CA bundle, ~/.netrc) is looked up once, here:
    about a third of its CPU per request, which is most of inject's time at 500 templates.
    ~/.netrc is not read at all: Vault authenticates by token, and a netrc password for the
    server's host would otherwise be sent to it as Basic auth."""
    session = _LeanSession()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(address)
    # hvac takes verify/cert from a given session, so they are set here as well.
    session.verify = _verify(settings, os.environ, address)
    session.cert = _cert(settings)
    for prefix in ("http://", "https://"):
        session.mount(prefix, _WatchedAdapter())
    return session


# What hvac passes to Session.request; anything else takes requests' own route.
_LEAN_KEYWORDS = frozenset(
    {"params", "headers", "timeout", "allow_redirects", "stream", "verify", "cert", "json", "proxies"}
)


class _LeanSession(requests.Session):
    """requests' Session, with a request prepared the short way when it is what hvac sends.

    Session.request merges the request's and the session's headers, params, auth, cookies,
    hooks, proxies, stream, verify and cert one by one, copying the cookie jar twice: about
    an eighth of inject's CPU per read, which at 500 templates is most of its time. Our
    session has no auth, hooks or params of its own, does not read the environment
    (``trust_env`` is off: its proxies are set once, above), and hvac sends only method,
    URL, headers, params, a JSON body, timeout, stream, redirects off and the session's own
    verify/cert. For exactly that, the request is prepared from the session's headers
    updated with hvac's (a None value dropping one, as requests does) and the session's
    cookie jar, then sent with the session's settings: what requests would send, byte for
    byte (a unit test compares them). Anything else (data, files, auth, cookies, hooks,
    proxies, positional arguments) goes through requests' own Session.request.
    """

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if args or not isinstance(url, str) or kwargs.get("proxies") or not _LEAN_KEYWORDS.issuperset(kwargs):
            return super().request(method, url, *args, **kwargs)
        headers = CaseInsensitiveDict(self.headers)
        headers.update(kwargs.get("headers") or {})
        for name in [name for name, value in headers.items() if value is None]:
            del headers[name]
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper() if isinstance(method, str) else method.decode().upper(),
            url=url,
            headers=headers,
            params=kwargs.get("params") or None,  # None: no query, and none of requests' type checks
            json=kwargs.get("json"),
            cookies=self.cookies,
        )
        return self.send(
            prepared,
            timeout=kwargs.get("timeout"),
            allow_redirects=kwargs.get("allow_redirects", True),
            stream=_or(kwargs.get("stream"), self.stream),
            verify=_or(kwargs.get("verify"), self.verify),
            cert=_or(kwargs.get("cert"), self.cert),
            proxies=self.proxies,
        )


def _or(given: Any, default: Any) -> Any:
    """requests' ``merge_setting`` for a setting that is not a mapping (None: the session's);
    that one is untyped in types-requests, so mypy --strict refuses a call to it."""
    return default if given is None else given


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
