"""The little HTTP the endpoints speak, as bytes in and bytes out. Pure.

One request per connection: the head is read (at most ``MAX_HEAD`` bytes), one answer is
sent with ``Connection: close``. Only ``GET`` and ``HEAD`` of a path; anything else is a
short error answer, never an exception. The ``Server`` header is ``inject``: no version of
inject or Python.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD = 8192  # request line and headers; a scraper or probe sends a few hundred bytes
END_OF_HEAD = (b"\r\n\r\n", b"\n\n")
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Request:
    """What the endpoints need of a request: its method and path (the query dropped)."""

    method: str
    path: str


@dataclass(frozen=True)
class Refused:
    """A request that gets an error answer without being routed."""

    code: int
    why: str


def read_head(data: bytes) -> Request | Refused | None:
    """The request in ``data`` (what was received so far), a refusal, or None while the head
    is incomplete."""
    ends = [at for at in (data.find(end) for end in END_OF_HEAD) if at >= 0]
    if not ends:
        return Refused(431, "request head too large") if len(data) > MAX_HEAD else None
    if min(ends) > MAX_HEAD:
        return Refused(431, "request head too large")
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return Refused(400, "not an HTTP/1.x request")
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return Refused(400, "not an HTTP/1.x request")
    if method not in ("GET", "HEAD"):
        return Refused(405, "only GET and HEAD")
    return Request(method, target.partition("?")[0])


def answer(code: int, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    """A complete response; the connection closes after it."""
    extra = "Allow: GET, HEAD\r\n" if code == 405 else ""
    head = (
        f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\n"
        "Server: inject\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def refusal(refused: Refused) -> bytes:
    """The answer to a refused request."""
    return answer(refused.code, TEXT, f"{refused.why}\n".encode())
