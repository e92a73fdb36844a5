"""What an answer from the server means (pure): retry, redirect, refusal or a JSON body.

The adapter (``adapter.py``) asks these questions of every answer; nothing here sends,
sleeps or logs. A refusal's body is parsed for the adapter to hand to hvac's exceptions,
but no server text ever reaches one of our messages (a body may echo request data).
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import SecretError, TransientError

MAX_RETRY_AFTER_S = 3600.0
# 501 is the one 5xx that says "never" (not implemented), not "not now" or "not this node".
TRANSIENT_STATUS = frozenset({412, 429, 473} | set(range(500, 600)) - {501})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
STATUS_HINTS = {
    400: " (the server rejected the request: check the path, role and parameters)",
    405: " (this path does not support the operation)",
}


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole (within the wire's cap)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    body: bytes
    url: str  # where it came from (redirect targets are resolved against it)


class RetryAfter(TransientError):
    """A 429 or 503 whose ``Retry-After`` asks for a pause before the next attempt."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def transient(answer: Answer) -> TransientError | None:
    """The error to retry on (another address, or later) when the status says "not now"."""
    status = answer.status
    if status not in TRANSIENT_STATUS:
        return None
    reason = f"HTTP {status}{_transient_hint(status, answer.body)}"
    retry_after_s = retry_after(answer.headers.get("Retry-After"))
    if retry_after_s and status in (429, 503):
        return RetryAfter(reason, retry_after_s=retry_after_s)
    return TransientError(reason)


def success_body(answer: Answer, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer ({} for none). A body that does not parse was cut
    short or mangled on the way: TransientError (try again). The parser's message is not
    passed on (it quotes the body)."""
    if answer.status == 204 or not answer.body.strip():
        return {}
    try:
        body = jsonlib.loads(answer.body)
    except ValueError:
        raise TransientError("the answer was not valid JSON (cut short?)") from None
    except RecursionError:  # the parser recurses once per nested array or object
        raise SecretError(f"the answer to {what} is nested too deeply to read") from None
    return body if isinstance(body, dict) else {}


def json_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a refusal's body; {} when there is none."""
    try:
        body = jsonlib.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def refusal_reason(status: int) -> str:
    """How our messages name a refusal: the status and, for some, what it usually means."""
    return f"HTTP {status}{STATUS_HINTS.get(status, '')}"


def _transient_hint(status: int, raw: bytes) -> str:
    """What a retried status says about the node, in our words (never the body's text)."""
    if status == 503 and any("sealed" in str(e).lower() for e in json_body(raw).get("errors") or ()):
        return " (sealed)"
    if status == 473:
        return " (a performance standby)"
    return ""


def retry_after(value: str | None) -> float:
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


# --- redirects ---------------------------------------------------------------------------------


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


def redirected_method(status: int, method: str, body: Any) -> tuple[str, Any]:
    """The method and body of the redirected request: 307/308 keep both; 303 (and 301/302
    after a POST, as clients do) turn into a GET without a body."""
    if status in (307, 308) or method.upper() in ("GET", "HEAD"):
        return method, body
    if status == 303 or method.upper() == "POST":
        return "GET", None
    return method, body
