"""reports: a read-only database client with an HTTPS listener (compose.yaml, `reports`).

Everything secret it has comes from one inject (PID 1 in its container) and is renewed
while it runs, without this process ever being restarted:

* ``/run/secrets/db.json``: dynamic PostgreSQL credentials (``database/creds/readonly``);
  inject renews the lease and, before its max TTL, reads new credentials;
* ``/run/secrets/tls-cert.pem`` and ``tls-key.pem``: one ``pki_cert`` issuance, re-issued by
  inject before it expires.

After inject rewrote a file it sends SIGHUP (``on_change = "signal"``): this process then
loads the new certificate for the next TLS connections and uses the new credentials for
the next query. ``GET /status`` (HTTPS) connects to PostgreSQL with the current
credentials and reports who it is there and what it may do; it shows the database user
name (not a secret) and fingerprints, never a password or key. ``GET /healthz`` answers
200. Standard library only, so it includes a small PostgreSQL client (SCRAM-SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from quiet_http import QuietHandler

DB_FILE = Path(os.environ.get("REPORTS_DB_FILE", "/run/secrets/db.json"))
CERT_FILE = Path(os.environ.get("REPORTS_CERT_FILE", "/run/secrets/tls-cert.pem"))
KEY_FILE = Path(os.environ.get("REPORTS_KEY_FILE", "/run/secrets/tls-key.pem"))
PORT = int(os.environ.get("REPORTS_PORT", "8443"))
# What the dynamic role may do, asked of PostgreSQL itself with the credentials.
QUERY = (
    "select current_user, pg_has_role(current_user, 'pg_read_all_data', 'member'),"
    " pg_has_role(current_user, 'pg_write_all_data', 'member'),"
    " has_schema_privilege(current_user, 'public', 'CREATE')"
)


def fingerprint(value: str) -> str:
    """A short sha256 prefix: enough to see a value change, useless to guess it."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


# --- a minimal PostgreSQL client: startup, SCRAM-SHA-256, one simple query --------------


class PgError(Exception):
    """The server refused (its message's M field) or spoke something unexpected."""


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise PgError("connection closed by the server")
        data += chunk
    return data


def _receive(sock: socket.socket) -> tuple[bytes, bytes]:
    kind = _read(sock, 1)
    (length,) = struct.unpack("!I", _read(sock, 4))
    payload = _read(sock, length - 4)
    if kind == b"E":  # ErrorResponse: fields of (code byte, cstring)
        fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
        raise PgError(fields.get(b"M", "error"))
    return kind, payload


def _scram(sock: socket.socket, password: str, mechanisms: bytes) -> None:
    """RFC 5802/7677 SCRAM-SHA-256 as PostgreSQL does it (the user comes from the startup)."""
    if b"SCRAM-SHA-256" not in mechanisms.split(b"\0"):
        raise PgError("the server offers no SCRAM-SHA-256")
    client_nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    first_bare = f"n=,r={client_nonce}"
    first = ("n,," + first_bare).encode()
    sock.sendall(_message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
    kind, payload = _receive(sock)
    if kind != b"R" or struct.unpack("!I", payload[:4])[0] != 11:
        raise PgError("expected SASLContinue")
    server_first = payload[4:].decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    if not attrs["r"].startswith(client_nonce):
        raise PgError("the server's nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    sock.sendall(_message(b"p", f"{final_bare},p={proof}".encode()))
    kind, payload = _receive(sock)
    if kind != b"R" or struct.unpack("!I", payload[:4])[0] != 12:
        raise PgError("expected SASLFinal")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    if payload[4:].decode() != f"v={expected}":
        raise PgError("the server's signature does not match: not the server we expected")


def pg_query(host: str, port: int, user: str, password: str, database: str, sql: str) -> list[str | None]:
    """Log in and run ``sql``; the first row's columns as text (None for NULL)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        params = f"user\0{user}\0database\0{database}\0\0".encode()
        sock.sendall(struct.pack("!II", len(params) + 8, 196608) + params)  # protocol 3.0
        while True:
            kind, payload = _receive(sock)
            if kind != b"R":
                break
            code = struct.unpack("!I", payload[:4])[0]
            if code == 0:  # AuthenticationOk
                continue
            if code != 10:
                raise PgError(f"unsupported authentication request {code}")
            _scram(sock, password, payload[4:])
        while kind != b"Z":  # ParameterStatus, BackendKeyData, ... up to ReadyForQuery
            kind, payload = _receive(sock)
        sock.sendall(_message(b"Q", sql.encode() + b"\0"))
        row: list[str | None] = []
        while kind != b"C":
            kind, payload = _receive(sock)
            if kind == b"D" and not row:
                (count,) = struct.unpack("!H", payload[:2])
                at = 2
                for _ in range(count):
                    (size,) = struct.unpack("!i", payload[at : at + 4])
                    at += 4
                    row.append(None if size < 0 else payload[at : at + size].decode())
                    at += max(size, 0)
        sock.sendall(_message(b"X", b""))
        return row


# --- what inject gave us, reloaded on SIGHUP ---------------------------------------------

_lock = threading.RLock()  # re-entrant: a SIGHUP may arrive while the accept loop holds it
_state: dict[str, object] = {"service": "reports", "pid": os.getpid(), "reloads": 0}
_tls: dict[str, ssl.SSLContext] = {}
_db: dict[str, str] = {}


def load(reason: str) -> None:
    """Read the credentials and build a TLS context from the current certificate and key."""
    db = json.loads(DB_FILE.read_text(encoding="utf-8"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(CERT_FILE, KEY_FILE)  # fails if the key is not the certificate's
    with _lock:
        _db.clear()
        _db.update({key: str(value) for key, value in db.items()})
        _tls["context"] = context
        if reason == "SIGHUP":
            _state["reloads"] = int(_state["reloads"]) + 1  # type: ignore[call-overload]
        _state.update(
            loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            loaded_by=reason,
            db_user=db["username"],
            db_password=fingerprint(str(db["password"])),
            db_lease=db.get("lease_id", ""),
            tls_cert=fingerprint(CERT_FILE.read_text(encoding="utf-8")),
        )
    print(f"reports: loaded credentials for {db['username']} and the certificate ({reason})", flush=True)


def on_hup(_signum: int, _frame: FrameType | None) -> None:
    try:
        load("SIGHUP")
    except (OSError, ValueError, KeyError, ssl.SSLError) as exc:
        print(f"reports: reload failed, keeping the old ones: {exc}", flush=True)


def database_status() -> dict[str, object]:
    """Connect with the current credentials: who we are and what we may do."""
    with _lock:
        db = dict(_db)
    try:
        user, reads, writes, creates = pg_query(
            db["host"], int(db["port"]), db["username"], db["password"], db["database"], QUERY
        )
    except (OSError, PgError, ValueError) as exc:
        return {"connected": False, "error": str(exc)}
    return {
        "connected": True,
        "current_user": user,
        "read_all_data": reads == "t",
        "write_all_data": writes == "t",
        "create_in_public": creates == "t",
    }


class Handler(QuietHandler):
    timeout = 10  # a client that never finishes its handshake does not hold a thread

    def do_GET(self) -> None:  # http.server's name
        if self.path == "/healthz":
            self._send(200, "text/plain", "ok\n")
        elif self.path == "/status":
            with _lock:
                state = dict(_state)
            state["database"] = database_status()
            self._send(200, "application/json", json.dumps(state) + "\n")
        else:
            self._send(404, "text/plain", "not found\n")


class TLSServer(ThreadingHTTPServer):
    """Each accepted connection is wrapped with the context current at that moment, so a
    reloaded certificate is served from the next connection on, by the same process."""

    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = self.socket.accept()
        with _lock:
            context = _tls["context"]
        # The handshake runs in the handler's thread, not in the accept loop.
        return context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        print(f"reports: connection from {client_address}: {exc}", flush=True)


def main() -> int:
    """Serve HTTPS; reload on SIGHUP; exit 0 on SIGTERM (inject stopping, docker stop)."""
    load("start")
    server = TLSServer(("0.0.0.0", PORT), Handler)  # noqa: S104 - inside a container
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    signal.signal(signal.SIGHUP, on_hup)
    print(f"reports: pid {os.getpid()} serving https on :{PORT}", flush=True)
    server.serve_forever()
    print(f"reports: pid {os.getpid()} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
