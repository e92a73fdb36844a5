"""inject's hvac adapter: how every hvac call reaches the server (hvac's documented
extension point, ``hvac.Client(adapter=InjectAdapter, ...)``; the operations are hvac's API
calls, in ``vault.py``).

One call of ``InjectAdapter.request`` (what hvac's API methods end in) is::

    request ── attempt ──> wire.exchange (wall-clock deadline: ``deadline.py``, ``wire.py``)
       │          │            └─ status + headers + body (capped at 16 MiB)
       │          ├─ 3xx to the same scheme+host+port: follow (at most 5 hops)
       │          ├─ 3xx to another listed address: follow there, it becomes current
       │          ├─ 3xx anywhere else: refused (the token would go with it; the message
       │          │  names only the target's origin); with an address list the next
       │          │  address is tried, the token never follows the redirect
       │          ├─ 2xx: the JSON body (a dict; {} for 204)
       │          └─ any other refusal: hvac's exception for the status (``raise_for_error``),
       │             translated into ours by the operation (``errors.py``)
       └─ TransientError (connection error, timeout, 412/429/473/5xx, cut-short body):
          with an address list, fail over to the next address at once (``failover.py``);
          once every address failed in this round, back off (or honour Retry-After) and
          try again until the budget is spent, then
          UnreachableError "<address(es)> did not answer <what> within <budget>s: ..."

hvac's API methods take no budget, so the operation says what it is doing and for how long
around its hvac call (``with adapter.operation(what, budget_s):``), per thread (a fan-out's
workers share one budget). Budget: ``budget_s`` seconds from ``since`` for all attempts of
one call; ``0`` means one attempt (per address) with the full request timeout. One attempt
may take min(request timeout, what is left of the budget, but at least MIN_ATTEMPT_TIMEOUT_S).

Address list: ``ServerSettings.addresses`` (an HA cluster's nodes). Each address has its own
wire over the adapter's one requests session (pools are per host); the current address is
shared with clones, so a failover is made and logged once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from hvac import utils as hvac_utils
from hvac.adapters import Adapter

from ..errors import TransientError, UnreachableError
from ..log import register_secret
from . import backoff, replies
from .failover import Failover
from .replies import Answer, RetryAfter
from .wire import SessionWire, Wire, new_session

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
MIN_ATTEMPT_TIMEOUT_S = 1.0  # an attempt near the retry deadline still gets this long
MAX_REDIRECTS = 5
RETRY_NOTE_S = 10.0  # while a call keeps retrying, one info line this often


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


WireFactory = Callable[[str], Wire]  # address -> a wire to it (a test seam: fake servers)


@dataclass(frozen=True)
class Operation:
    """What the calling thread is doing: its name in errors, and its retry budget."""

    what: str
    budget_s: float
    since: float  # a clock reading: the budget runs from here


@dataclass(frozen=True)
class _Call:
    """What one ``request`` sends."""

    method: str
    url: str  # "/v1/..." relative to the address
    headers: Mapping[str, str]
    params: Mapping[str, Any] | None
    json: Any


class Misdirected(TransientError):
    """A listed node redirected to a server outside the list: the next address is tried
    (with a single address this is an UnreachableError, not retried)."""


class InjectAdapter(Adapter):  # type: ignore[misc]  # hvac is untyped
    """hvac's adapter with inject's transport: retries within a per-operation budget,
    wall-clock attempt deadlines, failover over an address list, redirects only to the
    same origin or another listed address, and the JSON body (a dict) as the result."""

    def __init__(
        self,
        base_uri: str = "",
        token: str | None = None,
        *,
        settings: ServerSettings,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wire_for: WireFactory | None = None,
        failover: Failover | None = None,
        **hvac_settings: Any,
    ) -> None:
        """Made by ``hvac.Client(adapter=InjectAdapter, settings=...)``. hvac also passes the
        URL, TLS, proxy and timeout settings it found (some from ``VAULT_*`` variables):
        everything but the token comes from ``settings`` instead. ``wire_for`` makes the
        wire to an address (default: the real one); ``failover`` is shared by clones."""
        del base_uri, hvac_settings
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.wire_for = wire_for
        self.failover = failover or Failover(settings.candidates)
        self._wires: dict[int, Wire] = {}
        self._wires_lock = threading.Lock()
        self._local = threading.local()
        super().__init__(
            base_uri=settings.address,
            token=token,
            timeout=settings.request_timeout_s,
            allow_redirects=False,  # followed (same origin or a listed address) by request()
            session=new_session(settings),
            namespace=settings.namespace or None,
        )

    @property
    def token(self) -> str:
        """The token sent with every request (hvac sets it after a login with ``use_token``)."""
        return self._token

    @token.setter
    def token(self, token: str | None) -> None:
        self._token = token or ""
        if self._token:
            register_secret(self._token)

    @property
    def address(self) -> str:
        """The address requests go to now (the first one, or where a failover moved)."""
        return self.failover.address(self.failover.current)

    @contextlib.contextmanager
    def operation(self, what: str, budget_s: float, since: float | None = None) -> Iterator[None]:
        """Within this block, this thread's requests are ``what`` (in errors) and retry for
        ``budget_s`` seconds from ``since`` (a ``clock`` reading; default now)."""
        previous = getattr(self._local, "operation", None)
        self._local.operation = Operation(what, budget_s, self.clock() if since is None else since)
        try:
            yield
        finally:
            self._local.operation = previous

    def get_login_token(self, response: Mapping[str, Any]) -> str:
        """The token of a login answer (hvac's ``use_token``)."""
        return str(response["auth"]["client_token"])

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """``method`` on ``url`` (``/v1/...``), as hvac's API calls it: the JSON answer, or
        hvac's exception for a refusal; retried as the thread's operation allows."""
        operation = getattr(self._local, "operation", None) or Operation(
            f"{method.upper()} {url.partition('?')[0]}", 0.0, self.clock()
        )
        while "//" in url:  # as hvac's RawAdapter: the server treats '//' as '/'
            url = url.replace("//", "/")
        call = _Call(
            method.upper(),
            url,
            self._headers(headers, kwargs.get("wrap_ttl")),
            kwargs.get("params") or None,
            kwargs.get("json"),
        )
        answer, parsed = self._answered(call, operation)
        if parsed is not None:
            return parsed
        body = replies.json_body(answer.body)
        if raise_exception:
            # hvac's exception for the status; our own words only (no server text).
            hvac_utils.raise_for_error(
                call.method, url, answer.status, replies.refusal_reason(answer.status), json=body
            )
        return body

    def _headers(self, given: Mapping[str, str] | None, wrap_ttl: object) -> dict[str, str]:
        """hvac's headers: the request marker, the token, the namespace, response wrapping."""
        headers = dict(given or {})
        if self.request_header:
            headers["X-Vault-Request"] = "true"
        if self.token:
            headers["X-Vault-Token"] = self.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        return headers

    # --- retries and failover --------------------------------------------------------------

    def _answered(self, call: _Call, operation: Operation) -> tuple[Answer, dict[str, Any] | None]:
        """The first answer that is not "not now", within the operation's budget, with its
        JSON body when it is a success (None for a refusal)."""
        budget_s = operation.budget_s
        deadline = operation.since + budget_s
        rounds = 0
        tried: set[int] = set()  # the addresses that failed in this round
        said_at: float | None = None  # when the retrying was last logged at info
        while True:
            index = self.failover.current
            try:
                answer = self._attempt(
                    call, operation.what, index, self._attempt_timeout_s(budget_s, deadline)
                )
                if 200 <= answer.status < 300:  # a body cut short is TransientError: try again
                    return answer, replies.success_body(answer, operation.what)
                return answer, None
            except TransientError as exc:
                tried.add(index)
                current = self.failover.failed(index, str(exc))
                if current not in tried and self._time_left(budget_s, deadline):
                    continue  # another address has not failed yet: try it at once
                if isinstance(exc, Misdirected) and len(self.failover.addresses) == 1:
                    raise UnreachableError(str(exc)) from None
                rounds, tried = rounds + 1, set()
                # Honour the server's Retry-After; when that lands past the deadline, give
                # up now rather than sleep through the deadline for an answer that cannot come.
                retry_after_s = exc.retry_after_s if isinstance(exc, RetryAfter) else 0.0
                wait_s = max(backoff.delay_s(rounds), retry_after_s)
                if self.clock() + wait_s > deadline:
                    raise self._gave_up(operation, exc, retry_after_s) from None
                said_at = self._say_retrying(operation, index, exc, deadline, said_at)
                log.debug("retrying %s in %.2fs: %s", operation.what, wait_s, exc)
                self.sleep(wait_s)

    def _say_retrying(
        self, operation: Operation, index: int, exc: TransientError, deadline: float, said_at: float | None
    ) -> float | None:
        """One info line at the first failed round of a call, then one every RETRY_NOTE_S:
        what is retried, where, why, and for how long still (silence looked like a hang)."""
        now = self.clock()
        if said_at is not None and now - said_at < RETRY_NOTE_S:
            return said_at
        log.info(
            "%s %s: %s did not answer (%s); giving up in %.0fs",
            "still retrying" if said_at is not None else "retrying",
            operation.what,
            self.failover.address(index),
            exc,
            max(0.0, deadline - now),
        )
        return now

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

    def _attempt(self, call: _Call, what: str, index: int, timeout_s: float) -> Answer:
        """One attempt on address ``index``, redirects included, all within ``timeout_s``:
        the final answer, or TransientError for a status that says "not now"."""
        ends_at = self.clock() + timeout_s
        method, url, params, body = call.method, call.url, call.params, call.json
        for _ in range(MAX_REDIRECTS + 1):
            left_s = max(0.0, ends_at - self.clock())
            answer = self._wire(index).exchange(
                method, url, what=what, headers=call.headers, params=params, json=body, timeout_s=left_s
            )
            location = answer.headers.get("Location")
            if answer.status not in replies.REDIRECT_STATUS or not location:
                error = replies.transient(answer)
                if error is not None:
                    raise error
                self.failover.answered(index)  # up, even when the answer is a refusal
                return answer
            url, index = self._follow(urljoin(answer.url, location), index, what)
            method, body = replies.redirected_method(answer.status, method, body)
            params = None  # the Location carries its own query
        where = self.failover.address(index)
        raise UnreachableError(f"{where} redirected {what} more than {MAX_REDIRECTS} times; giving up")

    def _follow(self, target: str, index: int, what: str) -> tuple[str, int]:
        """Where a redirect from address ``index`` goes: (address-relative URL, address index).
        The same origin, or another address of the list (which then becomes current);
        anywhere else is refused (naming only the target's origin: its path or query may
        carry data)."""
        here = self.failover.address(index)
        relative = replies.same_origin_path(here, target)
        if relative is not None:
            log.debug("following a redirect of %s on %s", what, here)
            return relative, index
        for other, address in enumerate(self.failover.addresses):
            relative = replies.same_origin_path(address, target)
            if relative is not None:
                self.failover.redirected(index, other)
                return relative, other
        listed = "the configured addresses" if len(self.failover.addresses) > 1 else "the configured address"
        raise Misdirected(
            f"{here} redirected {what} to {replies.origin_of(target)}, another server:"
            f" refused, the token is only sent to {listed}"
            " (point VAULT_ADDR at the server that should answer, or list it in INJECT_ADDRESSES)"
        )

    def _gave_up(self, operation: Operation, exc: TransientError, retry_after_s: float) -> UnreachableError:
        within = f" within {operation.budget_s:g}s" if operation.budget_s > 0 else ""
        asked = f" (the server asked to retry after {retry_after_s:g}s)" if retry_after_s else ""
        who = ", ".join(self.failover.addresses)
        return UnreachableError(f"{who} did not answer {operation.what}{within}: {exc}{asked}")

    def _wire(self, index: int) -> Wire:
        # made on first use; the lock keeps fan-out threads from making two
        with self._wires_lock:
            if index not in self._wires:
                address = self.failover.address(index)
                made = (
                    self.wire_for(address)
                    if self.wire_for
                    else SessionWire(self.session, self.settings, address)
                )
                self._wires[index] = made
            return self._wires[index]
