"""An HTTP-aware fault proxy for the end-to-end tests: it sits on 127.0.0.1:<free port> in
front of a real OpenBao and, per request, passes it through or breaks it in one way.

Modes (one at a time; each may apply to every request or only to request paths that
contain ``match``, so a test can break secret reads and leave, say, the token lookup alone):

* pass-through (``pass_through``): forward and answer;
* refuse (``refuse``): the listener and every live connection are closed, so connecting
  fails; ``pass_through`` (or any other mode) listens again on the same port;
* stall (``stall``): read the request and never answer (a read timeout for the client);
  stalled connections are closed when the mode changes or the proxy stops;
* status (``status``): answer 429/500/502/503 (with ``Retry-After`` if given) and a JSON
  body that carries ``body_marker``, so a test can check the body never reaches a log;
* truncate (``truncate``): forward, then answer with the full ``Content-Length`` but only
  the first half of the body, and close;
* trickle (``trickle``): answer ``200`` with its headers at once, then one body byte every
  0.5 s (``phase="body"``); or send the status line and headers themselves a byte every
  0.5 s (``phase="status"``); never finishing until the mode changes (or MAX_STALL_S);
* oversized (``oversized``): answer ``200`` with a 20 MiB JSON body (``Content-Length``, or
  ``chunked=True`` for a chunked answer that declares no length);
* redirect (``redirect``): answer ``307`` with ``Location: <location>``, never forwarding.

``Listener`` is a tiny loopback HTTP server that records the requests it receives (and
whether they carried ``X-Vault-Token``): the far end of a redirect that must not be followed.

Keep-alive connections are served request by request (``HTTP/1.1``), so a mode change
applies to the very next request, not only to new connections. Each forwarded request
uses its own short-lived upstream connection. Everything is loopback only and bounded:
upstream timeouts, a cap on how long a stall lasts, and ``stop`` closes everything.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
UPSTREAM_TIMEOUT_S = 10.0
MAX_STALL_S = 60.0  # a forgotten stall still ends
TRICKLE_INTERVAL_S = 0.5
TRICKLE_BODY_BYTES = 4096  # declared; at 2 bytes/s it would take over half an hour
OVERSIZED_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}
)


@dataclass(frozen=True)
class Fault:
    """What to do with a request whose path contains ``match`` ("" matches every request)."""

    kind: str  # "stall", "status", "truncate", "trickle", "oversized" or "redirect"
    match: str = ""
    status: int = 0
    retry_after_s: int | None = None
    phase: str = "body"  # trickle: "body" or "status"
    chunked: bool = False  # oversized: no Content-Length
    location: str = ""  # redirect

    def applies(self, path: str) -> bool:
        """True when this fault is meant for a request to ``path``."""
        return self.match in path


class FaultProxy:
    """The proxy. ``start`` listens; ``stop`` closes the listener, every connection and stall."""

    def __init__(self, target: str, *, body_marker: str = "fault-proxy") -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        if host != LOOPBACK:
            raise ValueError(f"the fault proxy only forwards to {LOOPBACK}, not {host}")
        self.target_port = int(port)
        self.body_marker = body_marker
        self.port = 0
        self._fault: Fault | None = None
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._hits = 0  # requests the current fault was applied to
        self._first_request_at: float | None = None  # since the mode was set
        self.hit_at: float | None = None  # monotonic time of the last faulted request

    # --- what a test calls --------------------------------------------------------------

    @property
    def address(self) -> str:
        """The proxy's URL, for VAULT_ADDR."""
        return f"http://{LOOPBACK}:{self.port}"

    def reserve(self) -> None:
        """Pick the port now without listening (connecting is refused until ``start``)."""
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            self.port = int(probe.getsockname()[1])

    def start(self) -> None:
        """Listen (on the same port as before, if there was one) and pass requests through."""
        self.pass_through()

    def stop(self) -> None:
        """Close the listener, every live connection and every stall."""
        self._close_listener()
        self._set(None)

    def pass_through(self) -> None:
        """Forward every request (listening again after ``refuse``)."""
        self._set(None)
        self._listen()

    def refuse(self) -> None:
        """Close the listener and every live connection: connecting is refused."""
        self._close_listener()
        self._set(None)

    def stall(self, *, match: str = "") -> None:
        """Read matching requests and never answer them."""
        self._apply(Fault("stall", match))

    def status(self, status: int, *, match: str = "", retry_after_s: int | None = None) -> None:
        """Answer matching requests with ``status`` (and ``Retry-After``), never forwarding them."""
        self._apply(Fault("status", match, status=status, retry_after_s=retry_after_s))

    def truncate(self, *, match: str = "") -> None:
        """Forward matching requests, then send only the first half of the answer's body."""
        self._apply(Fault("truncate", match))

    def trickle(self, *, phase: str = "body", match: str = "") -> None:
        """Answer matching requests a byte every 0.5 s: the body after prompt headers
        (``phase="body"``) or the status line and headers themselves (``phase="status"``)."""
        if phase not in ("body", "status"):
            raise ValueError(f"trickle phase is 'body' or 'status', not {phase!r}")
        self._apply(Fault("trickle", match, phase=phase))

    def oversized(self, *, chunked: bool = False, match: str = "") -> None:
        """Answer matching requests ``200`` with a 20 MiB JSON body (chunked: no length declared)."""
        self._apply(Fault("oversized", match, chunked=chunked))

    def redirect(self, location: str, *, match: str = "", status: int = 307) -> None:
        """Answer matching requests ``status`` with ``Location: location``."""
        self._apply(Fault("redirect", match, status=status, location=location))

    @property
    def hits(self) -> int:
        """How many requests the current fault was applied to."""
        with self._lock:
            return self._hits

    def wait_hits(self, count: int, *, timeout_s: float = 10.0) -> int:
        """Wait until the current fault was applied ``count`` times; fail after the deadline."""
        self._wait(lambda: self._hits >= count, timeout_s, f"{count} faulted request(s)")
        return self._hits

    def wait_request(self, *, timeout_s: float = 10.0) -> float:
        """Wait for the first request since the mode was last set; its monotonic arrival time."""
        self._wait(lambda: self._first_request_at is not None, timeout_s, "a request")
        assert self._first_request_at is not None
        return self._first_request_at

    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the fault proxy saw no {what} in {timeout_s}s")
                self._lock.wait(left)

    # --- state --------------------------------------------------------------------------

    def _apply(self, fault: Fault) -> None:
        self._set(fault)
        self._listen()

    def _set(self, fault: Fault | None) -> None:
        with self._lock:
            self._release.set()  # stalled requests of the previous mode end now
            self._release = threading.Event()
            self._fault = fault
            self._hits = 0
            self._first_request_at = None
            self._lock.notify_all()

    def _fault_for(self, path: str) -> tuple[Fault | None, threading.Event]:
        now = time.monotonic()
        with self._lock:
            fault = self._fault if self._fault is not None and self._fault.applies(path) else None
            if fault is not None:
                self._hits += 1
                self.hit_at = now
            if self._first_request_at is None:
                self._first_request_at = now
            self._lock.notify_all()
            return fault, self._release

    def _listen(self) -> None:
        if self._server is not None:
            return
        server = ThreadingHTTPServer((LOOPBACK, self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._serve_thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
            self._serve_thread = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            _close(conn)

    def _track(self, conn: socket.socket, live: bool) -> None:
        with self._lock:
            if live:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # --- one request --------------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        """Answer one request according to the current mode."""
        body = _read_body(request)
        fault, release = self._fault_for(request.path)
        if fault is None:
            _answer(request, *self._forward(request, body))
        elif fault.kind == "stall":
            release.wait(MAX_STALL_S)
            request.close_connection = True  # closed without a word
        elif fault.kind == "status":
            _answer(request, fault.status, self._fault_headers(fault), self._fault_body(fault))
        elif fault.kind == "trickle":
            _trickle(request, fault.phase, release)
        elif fault.kind == "oversized":
            _oversized(request, chunked=fault.chunked)
        elif fault.kind == "redirect":
            _answer(request, fault.status, [("Location", fault.location)], b"")
        else:
            status, headers, full = self._forward(request, body)
            _answer(request, status, headers, full[: len(full) // 2], content_length=len(full))
            request.close_connection = True

    def _forward(self, request: _Handler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(LOOPBACK, self.target_port, timeout=UPSTREAM_TIMEOUT_S)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers.pop("Host", None)
            upstream.request(request.command, request.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            return response.status, response.getheaders(), response.read()
        except OSError:
            return 502, [], b'{"errors":["fault proxy: upstream unreachable"]}'
        finally:
            upstream.close()

    def _fault_headers(self, fault: Fault) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json")]
        if fault.retry_after_s is not None:
            headers.append(("Retry-After", str(fault.retry_after_s)))
        return headers

    def _fault_body(self, fault: Fault) -> bytes:
        errors = [f"fault proxy: HTTP {fault.status}", self.body_marker]
        return json.dumps({"errors": errors}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' session uses it
    proxy: FaultProxy

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, live=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.proxy._track(self.connection, live=False)

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the proxy closed the connection under us
            super().handle()

    def do_any(self) -> None:
        self.proxy.handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = do_PATCH = do_HEAD = do_any

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test output is for the test


def _handler_for(proxy: FaultProxy) -> type[_Handler]:
    return type("FaultHandler", (_Handler,), {"proxy": proxy})


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length > 0 else b""


def _answer(
    request: BaseHTTPRequestHandler,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    content_length: int | None = None,
) -> None:
    request.send_response(status)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server"):
            request.send_header(name, value)
    request.send_header("Content-Length", str(len(body) if content_length is None else content_length))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
    request.wfile.flush()


def _trickle(request: _Handler, phase: str, release: threading.Event) -> None:
    """A 200 whose bytes come one every TRICKLE_INTERVAL_S until ``release`` (or MAX_STALL_S)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {TRICKLE_BODY_BYTES}\r\n"
    if phase == "body":
        request.wfile.write(head.encode() + b"\r\n")
        request.wfile.flush()
        stream = b" " * TRICKLE_BODY_BYTES  # JSON whitespace: never a complete answer
    else:
        stream = head.encode() + b"X-Pad: " + b"a" * TRICKLE_BODY_BYTES  # a header line without end
    request.close_connection = True
    deadline = time.monotonic() + MAX_STALL_S
    for byte in stream:
        if release.wait(TRICKLE_INTERVAL_S) or time.monotonic() > deadline:
            return
        request.wfile.write(bytes([byte]))  # an OSError (the client hung up) ends the handler
        request.wfile.flush()


def _oversized(request: _Handler, *, chunked: bool) -> None:
    """A 200 with a 20 MiB JSON secret, written in pieces (the client may hang up early)."""
    start, end = b'{"data": {"data": {"v": "', b'"}, "metadata": {"version": 1}}}'
    filler = OVERSIZED_BYTES - len(start) - len(end)
    pieces = [start, *([b"x" * _CHUNK] * (filler // _CHUNK)), b"x" * (filler % _CHUNK), end]
    request.send_response(200)
    request.send_header("Content-Type", "application/json")
    if chunked:
        request.send_header("Transfer-Encoding", "chunked")
    else:
        request.send_header("Content-Length", str(OVERSIZED_BYTES))
    request.end_headers()
    request.close_connection = True
    for piece in pieces:
        if piece:
            request.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        request.wfile.write(b"0\r\n\r\n")
    request.wfile.flush()


@dataclass(frozen=True)
class Seen:
    """One request a Listener received."""

    method: str
    path: str
    had_token: bool
    had_basic_auth: bool = False


class Listener:
    """A loopback HTTP server answering ``200`` with ``body`` (``{}``) to anything, recording
    what it received."""

    def __init__(self, body: bytes = b"{}") -> None:
        self.seen: list[Seen] = []
        seen = self.seen

        class Recorder(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_any(self) -> None:
                _read_body(self)
                auth = self.headers.get("Authorization", "")
                seen.append(
                    Seen(self.command, self.path, "X-Vault-Token" in self.headers, auth.startswith("Basic"))
                )
                _answer(self, 200, [("Content-Type", "application/json")], body)

            do_GET = do_POST = do_PUT = do_DELETE = do_LIST = do_any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Recorder)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
