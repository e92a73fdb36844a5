"""The benchmark's own `bao server -dev` on a loopback port, with a file audit device.

The audit device is declared in a config file passed next to ``-dev``, so it records
every request from the first one, and again after a restart on the same port (the
scale measurement stops the server and starts a new one with the same root token).
Accessors are not HMAC'd, so each tool's requests can be told apart by its token.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 30.0


class BenchError(Exception):
    """The benchmark cannot go on (a tool failed, a deadline passed)."""


def clean_env(home: Path) -> dict[str, str]:
    """The environment for every process we start: ours minus VAULT_*/BAO_*, HOME private."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env["HOME"] = str(home)
    return env


@dataclass
class Server:
    """A dev server we started (by pid), reachable at 127.0.0.1:port."""

    bao: str
    port: int
    token: str
    workdir: Path
    audit_log: Path
    process: subprocess.Popen[bytes] | None = None
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers health checks as active."""
        config = self.workdir / "server.hcl"
        config.write_text(
            'audit "file" "bench" {\n'
            f'  options = {{ file_path = "{self.audit_log}", hmac_accessor = "false" }}\n'
            "}\n"
        )
        argv = [
            self.bao,
            "server",
            "-dev",
            f"-dev-root-token-id={self.token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            f"-config={config}",
        ]
        with open(self.workdir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(self.workdir),
                start_new_session=True,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"bao server exited with {self.process.returncode}; see server.log")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._status("GET", "sys/health") == 200:
                    return
            time.sleep(0.05)
        raise BenchError(f"bao server not healthy within {START_TIMEOUT_S:g}s")

    def stop(self) -> None:
        """Stop the server (TERM, then KILL) and wait for it."""
        self._close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    # --- HTTP API ---------------------------------------------------------------------

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"X-Vault-Token": self.token, "Content-Type": "application/json"}
        self._conn.request(method, "/v1/" + path, body=payload, headers=headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def _status(self, method: str, path: str) -> int:
        try:
            return self._send(method, path, None)[0]
        except (OSError, http.client.HTTPException):
            self._close()
            raise

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call the API with the root token (one reconnect on a dropped keep-alive)."""
        try:
            status, data = self._send(method, path, body)
        except (OSError, http.client.HTTPException):
            self._close()
            status, data = self._send(method, path, body)
        if status >= 400:
            raise BenchError(f"{method} {path}: HTTP {status}")
        return json.loads(data) if data else {}

    def kv_put(self, path: str, data: dict[str, str]) -> int:
        """Write a KV v2 secret under ``secret/``; return the new version."""
        rest = path.removeprefix("secret/")
        body = self.api("POST", f"secret/data/{rest}", {"data": data})
        return int(body["data"]["version"])

    def create_token(self, name: str) -> tuple[str, str]:
        """A child token of root (same policies); returns (token, accessor)."""
        auth = self.api("POST", "auth/token/create", {"display_name": name, "ttl": "24h"})["auth"]
        return str(auth["client_token"]), str(auth["accessor"])

    def root_accessor(self) -> str:
        """The accessor of the root token (used by tools that must survive a restart)."""
        return str(self.api("GET", "auth/token/lookup-self")["data"]["accessor"])
