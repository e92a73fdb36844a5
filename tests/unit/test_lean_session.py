"""The wire's lean session sends what requests' own Session would, byte for byte, for what
hvac sends (and keeps a load balancer's cookie); anything else takes requests' own route."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from vault_inject.client import transport

COOKIE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: SERVERID=node2; Path=/\r\n\r\n{}"


class Recorder:
    """A loopback HTTP server that keeps each raw request and answers with a cookie."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                conn.sendall(COOKIE_ANSWER)


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.listener.close()


def like_ours(session: requests.Session) -> requests.Session:
    session.trust_env = False
    session.proxies = {}
    session.verify = True
    return session


def hvac_call(session: requests.Session, address: str, **extra: Any) -> None:
    """What hvac's adapter passes to Session.request (see hvac.adapters.Adapter.request)."""
    kwargs: dict[str, Any] = {
        "headers": {"X-Vault-Request": "true", "X-Vault-Token": "s.token"},
        "allow_redirects": False,
        "cert": None,
        "verify": True,
        "timeout": 5,
        "proxies": None,
        "stream": True,
        **extra,
    }
    session.request(
        method="POST" if "json" in extra else "GET", url=address + "/v1/secret/data/app", **kwargs
    ).close()


CALLS = [
    {},
    {"params": {"version": "3"}},
    {"json": {"data": {"password": "p"}, "options": {"cas": 1}}},
    {"headers": {"X-Vault-Token": "s.token", "X-Vault-Namespace": "team-a/"}},
]


@pytest.mark.parametrize("extra", CALLS)
def test_the_lean_session_sends_what_requests_sends(server: Recorder, extra: dict[str, Any]) -> None:
    """Twice each (the second time with the cookie the first answer set): the same bytes."""
    for session in (like_ours(requests.Session()), like_ours(transport._LeanSession())):
        hvac_call(session, server.address, **extra)
        hvac_call(session, server.address, **extra)
    plain, lean = server.requests[:2], server.requests[2:]
    assert b"Cookie: SERVERID=node2" in plain[1]
    assert lean == plain


def test_other_requests_take_requests_own_route(server: Recorder) -> None:
    """Form data (never sent by hvac) is encoded by Session.request itself."""
    for session in (like_ours(requests.Session()), like_ours(transport._LeanSession())):
        session.request("POST", server.address + "/form", data={"a": "1"}, timeout=5).close()
    assert server.requests[0] == server.requests[1]
    assert server.requests[0].endswith(b"\r\n\r\na=1")
